package resource

import (
	"fmt"
	"testing"
)

func TestNotFound(t *testing.T) {
	const tail = " was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
	tests := []struct{ id, want string }{
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1",
			"The Resource 'Microsoft.Compute/disks/d1' under resource group 'rg'" + tail},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/vault1",
			"The Resource 'Microsoft.DataProtection/backupVaults/vault1' under resource group 'rg'" + tail},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/vault1/backupInstances/x",
			"The Resource 'Microsoft.DataProtection/backupVaults/vault1/backupInstances/x' under resource group 'rg'" + tail},
		{"/subscriptions/s/resourceGroups/RG/providers/Microsoft.DataProtection/backupVaults/V/backupInstances/bi/recoveryPoints/rp",
			"The Resource 'Microsoft.DataProtection/backupVaults/V/backupInstances/bi/recoveryPoints/rp' under resource group 'RG'" + tail},
		{"/subscriptions/s/providers/Microsoft.DataProtection/locations/l/operationStatus/op",
			"The Resource 'Microsoft.DataProtection/locations/l/operationStatus/op'" + tail},
	}
	for _, tc := range tests {
		e := NotFound(MustParse(tc.id))
		if e.Kind != KindNotFound || e.Code != CodeResourceNotFound || e.Message != tc.want {
			t.Errorf("NotFound(%s) = %v %s %q\nwant %q", tc.id, e.Kind, e.Code, e.Message, tc.want)
		}
		if !IsNotFound(fmt.Errorf("read: %w", e)) {
			t.Errorf("IsNotFound(NotFound(%s)) is false", tc.id)
		}
	}
}
