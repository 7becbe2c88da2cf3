package api

import (
	"testing"

	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/tenant"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		body   string
		ok     bool
		target string
	}{
		{`{"location":"local","tags":{"a":"b"}}`, true, ""},
		{`{"location":"local","unknownField":{"x":[1,2]}}`, true, ""}, // unknown fields are ignored, as ARM does
		{`{"location":5}`, false, "location"},
		{`{"tags":{"a":5}}`, false, "tags"},
		{`{"location":"x"`, false, ""},
		{`[]`, false, ""},
		{``, false, ""},
		{`{} {}`, false, ""},
	}
	for _, tt := range tests {
		var in tenant.PutGroupInput
		err := DecodeJSON([]byte(tt.body), &in)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.body, err, tt.ok)
			continue
		}
		if err != nil {
			e := resource.AsError(err)
			if e == nil || e.Code != "InvalidRequestContent" || e.Kind != resource.KindBadRequest {
				t.Errorf("%s: error %v is not a 400 InvalidRequestContent", tt.body, err)
			}
			if e != nil && e.Target != tt.target {
				t.Errorf("%s: target %q, want %q", tt.body, e.Target, tt.target)
			}
		}
	}
}

// FuzzDecodeRequestBodies feeds arbitrary bytes to the request-body
// decoders: they must never panic and must fail only with ARM errors.
func FuzzDecodeRequestBodies(f *testing.F) {
	for _, s := range []string{`{"location":"local","tags":{"a":"b"}}`, `{"properties":{"roleDefinitionId":"x","principalId":"y"}}`,
		`{"properties":{"displayName":"d","workload":"Production"}}`, `null`, `{"tags":null}`, "\x00", `{"a":` + "\"\\ud800\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var g tenant.PutGroupInput
		if err := DecodeJSON(body, &g); err != nil && resource.AsError(err) == nil {
			t.Fatalf("group body: non-ARM error %v", err)
		}
		var tags struct {
			Tags map[string]string `json:"tags"`
		}
		if err := DecodeJSON(body, &tags); err == nil {
			if err := resource.CheckTags(tags.Tags); err != nil && resource.AsError(err) == nil {
				t.Fatalf("tags: non-ARM error %v", err)
			}
		}
		if _, err := rbac.DecodeAssignmentRequest(body, "/subscriptions/s", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", nil); err != nil {
			if rbac.ErrorFor(err) == nil {
				t.Fatalf("assignment body: unmapped error %v", err)
			}
		}
	})
}

func TestRouterCaseInsensitive(t *testing.T) {
	s := &Server{}
	s.Handle(Route{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}"},
		Route{Method: "GET", Pattern: "{scope...}/providers/Microsoft.Authorization/roleAssignments/{name}"},
		Route{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Authorization/roleAssignments/special"})
	rt, vars, _ := s.lookup("GET", splitPath("/SUBSCRIPTIONS/Abc/resourcegroups/MyRG"))
	if rt == nil || vars["sub"] != "Abc" || vars["rg"] != "MyRG" {
		t.Fatalf("case-insensitive match failed: %v %v", rt, vars)
	}
	rt, vars, _ = s.lookup("GET", splitPath("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d/providers/microsoft.authorization/roleassignments/x"))
	if rt == nil || vars["scope"] != "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d" || vars["name"] != "x" {
		t.Fatalf("scope capture: %v %v", rt, vars)
	}
	rt, vars, _ = s.lookup("GET", splitPath("/providers/Microsoft.Authorization/roleAssignments/x"))
	if rt == nil || vars["scope"] != "/" {
		t.Fatalf("root scope capture: %v %v", rt, vars)
	}
	rt, _, _ = s.lookup("GET", splitPath("/subscriptions/s/resourceGroups/g/providers/Microsoft.Authorization/roleAssignments/special"))
	if rt == nil || rt.Pattern != "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Authorization/roleAssignments/special" {
		t.Fatalf("most specific route must win, got %v", rt)
	}
	if rt, _, other := s.lookup("DELETE", splitPath("/subscriptions/s/resourceGroups/g")); rt != nil || !other {
		t.Fatal("wrong method must report another method matched")
	}
}
