//go:build !linux

package local

import "os"

// writeData writes data to the new, empty file f from offset 0.
func writeData(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}

// readRange reads n bytes at off of cf into a new slice.
func (s *Store) readRange(cf *cachedFile, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := cf.f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}
