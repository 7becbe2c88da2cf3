package s3

// RangedGETs returns how many ranged GETs s has sent.
func RangedGETs(s *Store) int64 { return s.gets.Load() }
