// Package directio owns file I/O that bypasses the page cache (O_DIRECT on
// Linux): buffers aligned for it, opening a file for it, and a write that
// splits a transfer between a direct and an ordinary descriptor of a file.
//
// Direct I/O needs the memory address, the file offset and the length of
// every transfer to be multiples of Align (Aligned); WriteAt sends the rest
// through the ordinary descriptor. Open reports
// errors.ErrUnsupported where the platform or the file system refuses
// direct I/O (tmpfs, some FUSE and network file systems, every non-Linux
// system), so that the fallback is always to ordinary, correct I/O.
package directio

import (
	"os"
	"unsafe"
)

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

// WriteAt writes p at off: the largest aligned prefix through direct (a
// file opened with Open; nil for none) and the rest through buffered, the
// same file opened normally. A direct write the file system refuses
// before writing anything is done buffered instead. It returns the bytes
// written through each.
func WriteAt(direct, buffered *os.File, p []byte, off int64) (viaDirect, viaBuffered int, err error) {
	if a := len(p) &^ (Align - 1); direct != nil && a > 0 && Aligned(p[:a], off) {
		n, err := direct.WriteAt(p[:a], off)
		if err != nil && (n > 0 || !Refused(err)) {
			return n, 0, err
		}
		viaDirect = n
	}
	viaBuffered, err = buffered.WriteAt(p[viaDirect:], off+int64(viaDirect))
	return viaDirect, viaBuffered, err
}
