package blockdev

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestOpenDuringDelete opens and creates a volume again while DeleteVolume
// is between closing it and removing its files: both are refused, and the deletion leaves no open volume, no files and no record
// behind (before the fix the open reopened the volume, which then stayed
// open over its removed directory and put its record back).
func TestOpenDuringDelete(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4096})
	v, err := env.e.CreateVolume(ctx, "vol", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAtContext(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	var openErr, createErr error
	env.e.hooks.deleting = func(id string) {
		var reopened *Volume
		reopened, openErr = env.e.OpenVolume(ctx, id)
		if openErr == nil {
			// What a poller does with the volume it got.
			_, _ = reopened.ReadAtContext(ctx, make([]byte, 512), 0)
		}
		_, createErr = env.e.CreateVolume(ctx, id, 1<<20)
	}
	if err := env.e.DeleteVolume(ctx, "vol"); err != nil {
		t.Errorf("DeleteVolume: %v", err)
	}
	env.e.hooks.deleting = nil

	if !errors.Is(openErr, ErrDeleting) || !errors.Is(openErr, ErrNotFound) {
		t.Errorf("OpenVolume during the deletion: %v, want ErrDeleting and ErrNotFound", openErr)
	}
	if !errors.Is(createErr, ErrDeleting) || !errors.Is(createErr, ErrExists) {
		t.Errorf("CreateVolume during the deletion: %v, want ErrDeleting and ErrExists", createErr)
	}
	if _, err := env.e.OpenVolume(ctx, "vol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenVolume after the deletion: %v, want ErrNotFound", err)
	}
	if _, err := v.ReadAtContext(ctx, make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("read through the handle held across the deletion: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(env.e.volDir("vol")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the volume's directory after the deletion: %v, want it gone", err)
	}
	if _, err := env.e.getVolumeRecord(ctx, "vol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the volume record after the deletion: %v, want ErrNotFound", err)
	}
	// The ID is free again once the deletion is over.
	if _, err := env.e.CreateVolume(ctx, "vol", 1<<20); err != nil {
		t.Errorf("CreateVolume after the deletion: %v", err)
	}
}

// TestDeleteDuringDelete deletes a volume while its deletion runs: the
// second deletion is refused with ErrDeleting and the first one ends.
func TestDeleteDuringDelete(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4096})
	if _, err := env.e.CreateVolume(ctx, "vol", 1<<20); err != nil {
		t.Fatal(err)
	}
	var inner error
	nested := false
	env.e.hooks.deleting = func(id string) {
		if nested {
			return
		}
		nested = true
		inner = env.e.DeleteVolume(ctx, id)
	}
	if err := env.e.DeleteVolume(ctx, "vol"); err != nil {
		t.Errorf("DeleteVolume: %v", err)
	}
	if !errors.Is(inner, ErrDeleting) {
		t.Errorf("DeleteVolume during the deletion: %v, want ErrDeleting", inner)
	}
	if _, err := env.e.OpenVolume(ctx, "vol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenVolume after the deletion: %v, want ErrNotFound", err)
	}
}
