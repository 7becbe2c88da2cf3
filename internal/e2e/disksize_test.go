package e2e

import (
	"context"
	"strings"
	"testing"

	"coffer/internal/client"
)

// TestDiskSizeZero: a diskSizeGB of 0 (or below) is refused as out of
// range, in Azure's words, by the API at create and at update and by the
// CLI, which tells `--size-gb 0` from no --size-gb; nothing changes.
func TestDiskSizeZero(t *testing.T) {
	env := Start(t, Options{})
	ctx := context.Background()
	c := env.Client("")
	if _, err := c.CreateGroup(ctx, "rg", "local", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDisk(ctx, "rg", "d1", client.DiskSpec{Location: "local", SizeGB: 2}, true); err != nil {
		t.Fatal(err)
	}
	outOfRange := func(v string) string {
		return "The value " + v + " of parameter 'diskSizeGB' is out of range. The value must be between 1 and "
	}
	disk := "/subscriptions/" + env.Admin.SubscriptionID + "/resourceGroups/rg/providers/Microsoft.Compute/disks/"
	for _, tc := range []struct{ method, name, body, v string }{
		{"PUT", "d0", `{"location":"local","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":0}}`, "0"},
		{"PUT", "d0", `{"location":"local","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":-3}}`, "-3"},
		{"PATCH", "d1", `{"properties":{"diskSizeGB":0}}`, "0"},
	} {
		before := storeState(t, env)
		status, body, _ := raw(t, env, tc.method, disk+tc.name+"?api-version=2024-03-02", "", []byte(tc.body), nil)
		e, _ := body["error"].(map[string]any)
		if msg, _ := e["message"].(string); status != 400 || e["code"] != "InvalidParameter" || e["target"] != "diskSizeGB" ||
			!strings.HasPrefix(msg, outOfRange(tc.v)) {
			t.Errorf("%s diskSizeGB %s: %d %v", tc.method, tc.v, status, body)
		}
		if ch := storeChanges(before, storeState(t, env)); len(ch) > 0 {
			t.Errorf("%s diskSizeGB %s changed the store: %v", tc.method, tc.v, ch)
		}
	}

	cliAgainst(t, env)
	coffer := func(want int, args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI("", false, args...)
		if code != want {
			t.Fatalf("coffer %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, stdout, stderr)
		}
		return stderr
	}
	if msg := coffer(1, "disk", "create", "-g", "rg", "-n", "d0", "--size-gb", "0"); !strings.Contains(msg, outOfRange("0")) ||
		!strings.Contains(msg, "Target: diskSizeGB") {
		t.Errorf("disk create --size-gb 0: %s", msg)
	}
	if msg := coffer(1, "disk", "create", "-g", "rg", "-n", "d0"); !strings.Contains(msg, "Required parameter 'diskSizeGB' is missing") {
		t.Errorf("disk create without --size-gb: %s", msg)
	}
	if msg := coffer(1, "disk", "update", "-g", "rg", "-n", "d1", "--size-gb", "0"); !strings.Contains(msg, outOfRange("0")) {
		t.Errorf("disk update --size-gb 0: %s", msg)
	}
	if msg := coffer(2, "disk", "update", "-g", "rg", "-n", "d1"); !strings.Contains(msg, "nothing to update") {
		t.Errorf("disk update without changes: %s", msg)
	}
	if msg := coffer(2, "disk", "create", "-g", "rg", "-n", "d0", "--size-gb", "lots"); !strings.Contains(msg, "not a whole number") {
		t.Errorf("disk create --size-gb lots: %s", msg)
	}
	if _, err := c.GetDisk(ctx, "rg", "d0"); client.AsError(err) == nil || client.AsError(err).StatusCode != 404 {
		t.Errorf("d0 exists after refused creates: %v", err)
	}
	if d, err := c.GetDisk(ctx, "rg", "d1"); err != nil || d.Properties.DiskSizeGB != 2 {
		t.Errorf("d1 after refused updates: %+v %v", d.Properties, err)
	}
	coffer(0, "disk", "update", "-g", "rg", "-n", "d1", "--size-gb", "3")
	if d, err := c.GetDisk(ctx, "rg", "d1"); err != nil || d.Properties.DiskSizeGB != 3 {
		t.Errorf("d1 after growing: %+v %v", d.Properties, err)
	}
}
