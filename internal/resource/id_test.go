package resource

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in                 string
		sub, rg, typ, name string
		wantErr            bool
		str                string
	}{
		{in: "/subscriptions/S1", sub: "S1", typ: "Microsoft.Resources/subscriptions", name: "S1"},
		{in: "/subscriptions/s1/resourceGroups/RG", sub: "s1", rg: "RG", typ: "Microsoft.Resources/resourceGroups", name: "RG"},
		{in: "subscriptions/s1/resourcegroups/rg/", sub: "s1", rg: "rg", typ: "Microsoft.Resources/resourceGroups", name: "rg",
			str: "/subscriptions/s1/resourceGroups/rg"},
		{in: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/D1", sub: "s", rg: "g", typ: "Microsoft.Compute/disks", name: "D1"},
		{in: "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/bi",
			sub: "s", rg: "g", typ: "Microsoft.DataProtection/backupVaults/backupInstances", name: "bi"},
		{in: "/subscriptions/s/providers/Microsoft.DataProtection/locations/l/operationStatus/op",
			sub: "s", typ: "Microsoft.DataProtection/locations/operationStatus", name: "op"},
		{in: "/providers/Microsoft.Subscription/aliases/a", typ: "Microsoft.Subscription/aliases", name: "a"},
		{in: "", wantErr: true},
		{in: "/", wantErr: true},
		{in: "/subscriptions", wantErr: true},
		{in: "/subscriptions//resourceGroups/g", wantErr: true},
		{in: "/subscriptions/s/resourceGroups", wantErr: true},
		{in: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks", wantErr: true},
		{in: "/subscriptions/s/resourceGroups/g/providers", wantErr: true},
		{in: "/subscriptions/s/foo/bar", wantErr: true},
		{in: "/tenants/x", wantErr: true},
	}
	for _, tt := range tests {
		id, err := Parse(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidID) {
				t.Errorf("Parse(%q) = %v, %v; want ErrInvalidID", tt.in, id, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if id.Subscription != tt.sub || id.ResourceGroup != tt.rg || id.Type() != tt.typ || id.Name() != tt.name {
			t.Errorf("Parse(%q) = sub %q rg %q type %q name %q", tt.in, id.Subscription, id.ResourceGroup, id.Type(), id.Name())
		}
		want := tt.str
		if want == "" {
			want = tt.in
		}
		if id.String() != want {
			t.Errorf("Parse(%q).String() = %q, want %q (caller's casing kept)", tt.in, id.String(), want)
		}
	}
}

func TestIDCaseInsensitive(t *testing.T) {
	a := MustParse("/subscriptions/ABC/resourceGroups/Rg/providers/Microsoft.Compute/disks/Disk1")
	b := MustParse("/SUBSCRIPTIONS/abc/RESOURCEGROUPS/rG/PROVIDERS/microsoft.compute/DISKS/disk1")
	if !a.Equal(b) || a.Key() != b.Key() {
		t.Fatalf("%s and %s should be equal", a, b)
	}
	if a.String() == b.String() {
		t.Fatal("String must keep each caller's casing")
	}
	if !a.IsType("microsoft.compute/DISKS") {
		t.Fatal("IsType is case-insensitive")
	}
	if !a.Within(MustParse("/subscriptions/abc/resourcegroups/RG")) || a.Within(MustParse("/subscriptions/abc/resourcegroups/RG2")) {
		t.Fatal("Within compares whole segments")
	}
}

func TestParentChild(t *testing.T) {
	bi := MustParse("/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/bi")
	v := bi.Parent()
	if v.String() != "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v" {
		t.Fatalf("parent of BI = %s", v)
	}
	if g := v.Parent(); g.String() != "/subscriptions/s/resourceGroups/g" {
		t.Fatalf("parent of vault = %s", g)
	}
	if s := v.Parent().Parent(); s.String() != "/subscriptions/s" {
		t.Fatalf("parent of group = %s", s)
	}
	if c := v.Child("backupPolicies", "p"); c.Type() != "Microsoft.DataProtection/backupVaults/backupPolicies" || c.Name() != "p" {
		t.Fatalf("child = %s", c)
	}
	if d := GroupID("s", "g").Child("Microsoft.Compute/disks", "d"); d.String() != "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d" {
		t.Fatalf("child of group = %s", d)
	}
}

func TestNameRules(t *testing.T) {
	tests := []struct {
		rule NameRule
		name string
		ok   bool
	}{
		{GroupNameRule, "rg-1_(x).y", true},
		{GroupNameRule, "ends.", false},
		{GroupNameRule, strings.Repeat("a", 90), true},
		{GroupNameRule, strings.Repeat("a", 91), false},
		{GroupNameRule, "", false},
		{GroupNameRule, "bad name", false},
		{GroupNameRule, "grüße", true},
		{DiskNameRule, "disk_1.data-a", true},
		{DiskNameRule, "-disk", false},
		{DiskNameRule, "disk-", false},
		{DiskNameRule, "disk_", true},
		{DiskNameRule, strings.Repeat("d", 81), false},
		{VaultNameRule, "v", false},
		{VaultNameRule, "vault-1", true},
		{VaultNameRule, "1vault", false},
		{VaultNameRule, "vault_1", false},
		{ChildNameRule, "DiskPolicy", true},
		{ChildNameRule, "a/b", false},
	}
	for _, tt := range tests {
		err := tt.rule.Check("InvalidResourceName", tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("%s %q: err = %v, want ok=%v", tt.rule.Type, tt.name, err, tt.ok)
		}
		if err != nil && !IsCode(err, "InvalidResourceName") {
			t.Errorf("%s %q: code = %v", tt.rule.Type, tt.name, err)
		}
	}
}

// FuzzParse checks that the parser never panics, and that whatever it
// accepts formats back to an ID that parses to the same key.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d",
		"/subscriptions/s", "/providers/Microsoft.Subscription/aliases/a", "subscriptions/x/", "//", "/subscriptions/s/providers/a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("Parse(%q) error not ErrInvalidID: %v", s, err)
			}
			return
		}
		again, err := Parse(id.String())
		if err != nil {
			t.Fatalf("Parse(String()) of %q = %q: %v", s, id.String(), err)
		}
		if again.Key() != id.Key() {
			t.Fatalf("round trip of %q: %q != %q", s, again.Key(), id.Key())
		}
		_ = id.Parent()
		_ = id.Type()
	})
}
