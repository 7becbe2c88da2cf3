package compute

// CheckDiskSizeGB checks a diskSizeGB that a request gave, with Azure's
// out-of-range error. The API calls it for every value a request carries,
// including 0, which DiskInput and DiskUpdate cannot tell from "not
// given".
func CheckDiskSizeGB(gb int64) error { return checkSizeGB(gb) }
