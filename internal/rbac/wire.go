package rbac

import (
	"encoding/json"
	"fmt"
	"time"
)

// RoleDefinitionResource is the ARM JSON shape of a role definition.
type RoleDefinitionResource struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties RoleDefinitionProperties `json:"properties"`
}

// RoleDefinitionProperties is a role definition's "properties" object.
type RoleDefinitionProperties struct {
	RoleName         string       `json:"roleName"`
	Type             string       `json:"type"` // BuiltInRole | CustomRole
	Description      string       `json:"description"`
	AssignableScopes []string     `json:"assignableScopes"`
	Permissions      []Permission `json:"permissions"`
	CreatedOn        *time.Time   `json:"createdOn,omitempty"`
	UpdatedOn        *time.Time   `json:"updatedOn,omitempty"`
	CreatedBy        string       `json:"createdBy,omitempty"`
	UpdatedBy        string       `json:"updatedBy,omitempty"`
}

// NewRoleDefinitionResource returns d in ARM's shape with the
// subscription-scoped ID /subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}
// (the tenant form when subscriptionID is empty). Nil lists become [].
func NewRoleDefinitionResource(d RoleDefinition, subscriptionID string) RoleDefinitionResource {
	props := RoleDefinitionProperties{
		RoleName:         d.RoleName,
		Type:             d.RoleType,
		Description:      d.Description,
		AssignableScopes: nonNil(d.AssignableScopes),
		Permissions:      make([]Permission, 0, len(d.Permissions)),
		CreatedOn:        timePtr(d.CreatedOn),
		UpdatedOn:        timePtr(d.UpdatedOn),
		CreatedBy:        d.CreatedBy,
		UpdatedBy:        d.UpdatedBy,
	}
	for _, p := range d.Permissions {
		props.Permissions = append(props.Permissions, Permission{
			Actions:        nonNil(p.Actions),
			NotActions:     nonNil(p.NotActions),
			DataActions:    nonNil(p.DataActions),
			NotDataActions: nonNil(p.NotDataActions),
		})
	}
	return RoleDefinitionResource{
		ID:         RoleDefinitionResourceID(subscriptionID, d.ID),
		Name:       d.ID,
		Type:       RoleDefinitionType,
		Properties: props,
	}
}

// MarshalRoleDefinition is json.Marshal of NewRoleDefinitionResource.
func MarshalRoleDefinition(d RoleDefinition, subscriptionID string) ([]byte, error) {
	b, err := json.Marshal(NewRoleDefinitionResource(d, subscriptionID))
	if err != nil {
		return nil, fmt.Errorf("marshal role definition %s: %w", d.ID, err)
	}
	return b, nil
}

// AssignmentResource is the ARM JSON shape of a role assignment.
type AssignmentResource struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Properties AssignmentProperties `json:"properties"`
}

// AssignmentProperties is a role assignment's "properties" object, in a
// response and (with the read-only fields empty) in a PUT body.
type AssignmentProperties struct {
	RoleDefinitionID                   string     `json:"roleDefinitionId"`
	PrincipalID                        string     `json:"principalId"`
	PrincipalType                      string     `json:"principalType,omitempty"`
	Scope                              string     `json:"scope,omitempty"`
	Description                        string     `json:"description,omitempty"`
	Condition                          string     `json:"condition,omitempty"`
	ConditionVersion                   string     `json:"conditionVersion,omitempty"`
	DelegatedManagedIdentityResourceID string     `json:"delegatedManagedIdentityResourceId,omitempty"`
	CreatedOn                          *time.Time `json:"createdOn,omitempty"`
	UpdatedOn                          *time.Time `json:"updatedOn,omitempty"`
	CreatedBy                          string     `json:"createdBy,omitempty"`
	UpdatedBy                          string     `json:"updatedBy,omitempty"`
}

// NewAssignmentResource returns a in ARM's shape. Its roleDefinitionId is the
// subscription form /subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid},
// or the tenant form when subscriptionID is empty.
func NewAssignmentResource(a Assignment, subscriptionID string) AssignmentResource {
	guid := a.RoleDefinitionID
	if g, err := ParseRoleDefinitionID(guid); err == nil {
		guid = g
	}
	return AssignmentResource{
		ID:   a.ID(),
		Name: a.Name,
		Type: RoleAssignmentType,
		Properties: AssignmentProperties{
			RoleDefinitionID:                   RoleDefinitionResourceID(subscriptionID, guid),
			PrincipalID:                        a.PrincipalID,
			PrincipalType:                      a.PrincipalType,
			Scope:                              a.Scope,
			Description:                        a.Description,
			Condition:                          a.Condition,
			ConditionVersion:                   a.ConditionVersion,
			DelegatedManagedIdentityResourceID: a.DelegatedManagedIdentityResourceID,
			CreatedOn:                          timePtr(a.CreatedOn),
			UpdatedOn:                          timePtr(a.UpdatedOn),
			CreatedBy:                          a.CreatedBy,
			UpdatedBy:                          a.UpdatedBy,
		},
	}
}

// MarshalAssignment is json.Marshal of NewAssignmentResource.
func MarshalAssignment(a Assignment, subscriptionID string) ([]byte, error) {
	b, err := json.Marshal(NewAssignmentResource(a, subscriptionID))
	if err != nil {
		return nil, fmt.Errorf("marshal role assignment %s: %w", a.Name, err)
	}
	return b, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
