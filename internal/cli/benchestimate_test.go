package cli

import "testing"

// TestBenchEstimateFollowsData: the disk a run needs follows the data of
// the image, not its holes; a 64 GiB sparse disk with 8 GiB of data was
// refused for needing 256 GiB (4× the disk size).
func TestBenchEstimateFollowsData(t *testing.T) {
	const gib = int64(1) << 30
	sparse := estimateBench(64*gib, 8*gib, false, false)
	dense := estimateBench(16*gib, 0, false, false) // 8 GiB of data too
	if sparse.disk != dense.disk || sparse.seconds != dense.seconds {
		t.Errorf("64 GiB with 8 GiB of data: %+v; 16 GiB half data: %+v; want the same", sparse, dense)
	}
	if sparse.disk > 48*gib {
		t.Errorf("64 GiB with 8 GiB of data needs %d GiB", sparse.disk/gib)
	}
	if withPeers := estimateBench(4*gib, 0, true, false); withPeers.disk != 16*gib {
		t.Errorf("4 GiB default run with peers: %d GiB, want 16 (4× the disk, measured)", withPeers.disk/gib)
	}
}
