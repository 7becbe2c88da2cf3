package e2e

import (
	"context"
	"net/http"
	"testing"

	"coffer/internal/client"
)

// TestNotFoundNamesARMPath: a missing resource, nested or not, is a 404
// ResourceNotFound whose message names the resource as ARM does: the
// provider namespace, then each type followed by its name, then the group.
func TestNotFoundNamesARMPath(t *testing.T) {
	env := Start(t, Options{})
	ctx := context.Background()
	c := env.Client("")
	if _, err := c.CreateGroup(ctx, "rg", "local", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVault(ctx, "rg", "vault1", "local", ""); err != nil {
		t.Fatal(err)
	}
	const tail = " under resource group 'rg' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
	tests := []struct {
		what string
		get  func() error
		want string
	}{
		{"vault", func() error { _, err := c.GetVault(ctx, "rg", "nope"); return err },
			"The Resource 'Microsoft.DataProtection/backupVaults/nope'" + tail},
		{"backup instance", func() error { _, err := c.GetInstance(ctx, "rg", "vault1", "x"); return err },
			"The Resource 'Microsoft.DataProtection/backupVaults/vault1/backupInstances/x'" + tail},
		{"policy", func() error { _, err := c.GetPolicy(ctx, "rg", "vault1", "p"); return err },
			"The Resource 'Microsoft.DataProtection/backupVaults/vault1/backupPolicies/p'" + tail},
		{"job", func() error {
			_, err := c.GetJob(ctx, "rg", "vault1", "00000000-0000-0000-0000-000000000001")
			return err
		}, "The Resource 'Microsoft.DataProtection/backupVaults/vault1/backupJobs/00000000-0000-0000-0000-000000000001'" + tail},
		{"disk", func() error { _, err := c.GetDisk(ctx, "rg", "d1"); return err },
			"The Resource 'Microsoft.Compute/disks/d1'" + tail},
		{"snapshot", func() error { _, err := c.GetSnapshot(ctx, "rg", "s1"); return err },
			"The Resource 'Microsoft.Compute/snapshots/s1'" + tail},
	}
	for _, tc := range tests {
		e := client.AsError(tc.get())
		if e == nil || e.StatusCode != http.StatusNotFound || e.Code != "ResourceNotFound" || e.Message != tc.want {
			t.Errorf("%s: got %+v\nwant 404 ResourceNotFound %q", tc.what, e, tc.want)
		}
	}
}
