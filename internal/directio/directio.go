// Package directio owns file I/O that bypasses the page cache (O_DIRECT on
// Linux): buffers aligned for it, opening a file for it, and switching an
// open file in and out of it.
//
// Direct I/O needs the memory address, the file offset and the length of
// every transfer to be multiples of Align. Callers check that with Aligned
// and fall back to ordinary I/O for the rest; every function reports
// errors.ErrUnsupported where the platform or the file system refuses
// direct I/O (tmpfs, some FUSE and network file systems, every non-Linux
// system), so that the fallback is always to ordinary, correct I/O.
package directio

import "unsafe"

// Align is the alignment of addresses, offsets and lengths of direct
// transfers: the largest logical block size of common devices.
const Align = 4096

// Buffer returns a zeroed slice of n bytes whose memory starts on an Align
// boundary.
func Buffer(n int) []byte {
	b := make([]byte, n+Align)
	shift := (Align - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Align)) % Align
	return b[shift : shift+n : shift+n]
}

// Aligned reports whether a transfer of p at offset off can be direct: p's
// address, its length and off are multiples of Align.
func Aligned(p []byte, off int64) bool {
	return len(p)%Align == 0 && off%Align == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%Align == 0
}
