package rbac

import "testing"

func TestScopeAncestor(t *testing.T) {
	const disk = "/subscriptions/S1/resourceGroups/RG-Disks/providers/Microsoft.Compute/disks/data1"
	tests := []struct {
		scope string
		level Level
		want  string
	}{
		{disk, LevelResource, disk},
		{disk, LevelResourceGroup, "/subscriptions/S1/resourceGroups/RG-Disks"},
		{disk, LevelSubscription, "/subscriptions/S1"},
		{disk, LevelRoot, "/"},
		{"/subscriptions/S1/resourceGroups/rg", LevelResource, "/subscriptions/S1/resourceGroups/rg"},
		{"/subscriptions/S1/resourceGroups/rg", LevelSubscription, "/subscriptions/S1"},
		{"/subscriptions/S1/", LevelResourceGroup, "/subscriptions/S1"},
		// A resource outside any group has no group to widen to.
		{"/subscriptions/S1/providers/Microsoft.Foo/bars/b", LevelResourceGroup, "/subscriptions/S1/providers/Microsoft.Foo/bars/b"},
		{"/subscriptions/S1/providers/Microsoft.Foo/bars/b", LevelSubscription, "/subscriptions/S1"},
	}
	for _, tt := range tests {
		sc, err := ParseScope(tt.scope)
		if err != nil {
			t.Fatal(err)
		}
		if got := sc.Ancestor(tt.level); got != tt.want {
			t.Errorf("Ancestor(%s, %v) = %s, want %s", tt.scope, tt.level, got, tt.want)
		}
	}
}
