// Builds crictl and critest (sigs.k8s.io/cri-tools) for the tests; see build.sh.
module crib.local/critools-build

go 1.26.2

require sigs.k8s.io/cri-tools v1.36.0
