// Package nbdtest holds test helpers for NBD: a sparse-file Backend that
// implements every optional capability, and a small sequential protocol
// client for driving a server from Go tests without external programs.
package nbdtest
