package rbac

import (
	"errors"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in       string
		wantPath string
		level    Level
		sub, rg  string
		err      error
	}{
		{"/", "/", LevelRoot, "", "", nil},
		{"/subscriptions/" + sub, "/subscriptions/" + sub, LevelSubscription, sub, "", nil},
		{"subscriptions/" + sub + "/", "/subscriptions/" + sub, LevelSubscription, sub, "", nil},
		{"/Subscriptions/S1/ResourceGroups/My-RG_(1).x", "/Subscriptions/S1/ResourceGroups/My-RG_(1).x", LevelResourceGroup, "S1", "My-RG_(1).x", nil},
		{"/subscriptions/s/resourceGroups/grüppe", "/subscriptions/s/resourceGroups/grüppe", LevelResourceGroup, "s", "grüppe", nil},
		{diskID, diskID, LevelResource, sub, "rg", nil},
		{instanceID, instanceID, LevelResource, sub, "rg", nil},
		{"/subscriptions/s/providers/Microsoft.Features/features/f", "/subscriptions/s/providers/Microsoft.Features/features/f", LevelResource, "s", "", nil},
		{diskID + "/providers/Microsoft.Authorization/roleAssignments/x", diskID + "/providers/Microsoft.Authorization/roleAssignments/x", LevelResource, sub, "rg", nil},

		{"", "", 0, "", "", ErrInvalidScope},
		{"//", "", 0, "", "", ErrInvalidScope},
		{"///", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions//resourceGroups/rg", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s//", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s w", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg.", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/r g", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/" + strings.Repeat("r", 91), "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers/Compute/disks/d", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/disks/d", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d/extra", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d/providers", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/providers/x", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s/rg", "", 0, "", "", ErrInvalidScope},
		{"/resourceGroups/rg", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s?x=1", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/s\x00", "", 0, "", "", ErrInvalidScope},
		{"/subscriptions/\xff", "", 0, "", "", ErrInvalidScope},
		{"/providers/Microsoft.Management/managementGroups/mg", "", 0, "", "", ErrUnsupportedScope},
		{"/providers/microsoft.management/managementgroups/mg/subscriptions/s", "", 0, "", "", ErrUnsupportedScope},
		{"/providers/Microsoft.Authorization/roleDefinitions/x", "", 0, "", "", ErrUnsupportedScope},
	}
	for _, tc := range tests {
		got, err := ParseScope(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("ParseScope(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if ValidateScope(tc.in) == nil {
				t.Errorf("ValidateScope(%q) = nil, want error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseScope(%q) error = %v", tc.in, err)
			continue
		}
		if got.Path != tc.wantPath || got.Level != tc.level || got.SubscriptionID != tc.sub || got.ResourceGroup != tc.rg {
			t.Errorf("ParseScope(%q) = {%q %v %q %q}, want {%q %v %q %q}", tc.in,
				got.Path, got.Level, got.SubscriptionID, got.ResourceGroup, tc.wantPath, tc.level, tc.sub, tc.rg)
		}
	}
}

func TestScopeContains(t *testing.T) {
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"/", "/", true},
		{"/", subScope, true},
		{"/", diskID, true},
		{subScope, "/", false},
		{subScope, subScope, true},
		{subScope, rgScope, true},
		{subScope, diskID, true},
		{"/subscriptions/A/resourceGroups/rg", "/subscriptions/a/resourcegroups/RG/providers/Microsoft.Compute/disks/d", true},
		{"/subscriptions/A/resourceGroups/rg", "/subscriptions/a/resourceGroups/rg2", false},
		{"/subscriptions/A/resourceGroups/rg2", "/subscriptions/a/resourceGroups/rg", false},
		{"/subscriptions/A/resourceGroups/rg/", "/subscriptions/A/resourceGroups/rg", true},
		{"subscriptions/A", "/subscriptions/a/resourceGroups/rg", true},
		{"/subscriptions/A", "/subscriptions/AB", false},
		{rgScope, subScope, false},
		{diskID, rgScope, false},
		{diskID, diskID, true},
		{diskID, disk2ID, false},
		{vaultID, instanceID, true},
		{instanceID, vaultID, false},
		{diskID, diskID + "/providers/Microsoft.Authorization/roleAssignments/x", true},
		{"", subScope, false},
		{subScope, "", false},
		{"/subscriptions//x", "/subscriptions//x/y", false},
		{"/", "/providers/Microsoft.Management/managementGroups/mg", false},
	}
	for _, tc := range tests {
		if got := ScopeContains(tc.outer, tc.inner); got != tc.want {
			t.Errorf("ScopeContains(%q, %q) = %v, want %v", tc.outer, tc.inner, got, tc.want)
		}
	}
}

func TestScopeNormalizeAndEqual(t *testing.T) {
	n, err := NormalizeScope("Subscriptions/S1/ResourceGroups/RG/")
	if err != nil || n != "/Subscriptions/S1/ResourceGroups/RG" {
		t.Errorf("NormalizeScope = %q, %v; want /Subscriptions/S1/ResourceGroups/RG", n, err)
	}
	if _, err := NormalizeScope("/subscriptions//rg"); !errors.Is(err, ErrInvalidScope) {
		t.Errorf("NormalizeScope(bad) error = %v, want ErrInvalidScope", err)
	}
	if !ScopeEqual("/subscriptions/S1/resourceGroups/RG", "subscriptions/s1/RESOURCEGROUPS/rg/") {
		t.Error("ScopeEqual of case/slash variants = false")
	}
	if ScopeEqual("/subscriptions/s1", "/subscriptions/s2") || ScopeEqual("", "") || ScopeEqual("//", "//") {
		t.Error("ScopeEqual of different or invalid scopes = true")
	}
	if got := ScopeKey("/Subscriptions/S1/"); got != "/subscriptions/s1" {
		t.Errorf("ScopeKey = %q", got)
	}
	if got := ResourceGroupScope("s", "rg"); got != "/subscriptions/s/resourceGroups/rg" || !ScopeContains(SubscriptionScope("s"), got) {
		t.Errorf("ResourceGroupScope = %q", got)
	}
}
