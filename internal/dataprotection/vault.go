package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// Identity types of a vault.
const (
	IdentitySystemAssigned = "SystemAssigned"
	IdentityNone           = "None"
)

var (
	datastoreTypes  = []string{"VaultStore", "OperationalStore", "ArchiveStore"}
	redundancyTypes = []string{"LocallyRedundant", "GeoRedundant", "ZoneRedundant"}
)

func oneOf(v string, allowed []string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a, true
		}
	}
	return v, false
}

// VaultID returns the ID of vault name in sub/rg.
func VaultID(sub, rg, name string) resource.ID {
	return resource.GroupID(sub, rg).Child(VaultResourceType, name)
}

func (s *Service) getVault(ctx context.Context, tx store.Tx, id resource.ID) (VaultResource, error) {
	var v VaultResource
	err := getJSON(ctx, tx, kindVault, id.Key(), &v)
	if errors.Is(err, store.ErrNotFound) {
		if _, gerr := s.Groups.GetGroup(ctx, tx, id.GroupScope()); gerr != nil {
			return v, gerr
		}
		return v, resource.NotFound(id)
	}
	return v, err
}

// vaultOf returns the vault that holds child (a policy, instance, job).
func (s *Service) vaultOf(ctx context.Context, tx store.Tx, child resource.ID) (VaultResource, error) {
	vid := VaultID(child.Subscription, child.ResourceGroup, child.Names[0])
	v, err := s.getVault(ctx, tx, vid)
	if resource.IsCode(err, "ResourceNotFound") {
		return v, parentNotFound(vid.Name())
	}
	return v, err
}

func decodeVault(body []byte) (VaultResource, error) {
	var in VaultResource
	if err := json.Unmarshal(body, &in); err != nil {
		return in, userError("InvalidRequestContent", "The request content was invalid and could not be deserialized: %v", err)
	}
	return in, nil
}

func (s *Service) checkStorage(settings []StorageSetting) ([]StorageSetting, error) {
	if len(settings) == 0 {
		return nil, userError(CodeInvalidInput, "properties.storageSettings is required: for example [{\"datastoreType\": \"VaultStore\", \"type\": \"LocallyRedundant\"}]. (For disk backups it does not apply: their snapshots stay in the snapshot resource group.)").WithTarget("properties.storageSettings")
	}
	out := make([]StorageSetting, len(settings))
	for i, st := range settings {
		dt, ok := oneOf(st.DatastoreType, datastoreTypes)
		if !ok {
			return nil, userError(CodeInvalidInput, "storageSettings[%d].datastoreType %q is invalid; allowed: %s.", i, st.DatastoreType, strings.Join(datastoreTypes, ", ")).WithTarget(fmt.Sprintf("properties.storageSettings[%d].datastoreType", i))
		}
		t, ok := oneOf(st.Type, redundancyTypes)
		if !ok {
			return nil, userError(CodeInvalidInput, "storageSettings[%d].type %q is invalid; allowed: %s.", i, st.Type, strings.Join(redundancyTypes, ", ")).WithTarget(fmt.Sprintf("properties.storageSettings[%d].type", i))
		}
		out[i] = StorageSetting{DatastoreType: dt, Type: t}
	}
	return out, nil
}

func checkIdentityType(idt *IdentityDetails) (string, error) {
	if idt == nil || idt.Type == "" {
		return IdentityNone, nil
	}
	if t, ok := oneOf(idt.Type, []string{IdentitySystemAssigned, IdentityNone}); ok {
		return t, nil
	}
	return "", userError(CodeInvalidInput, "identity type %q is not supported; use %q (the vault's system-assigned managed identity, which disk backup needs) or %q.", idt.Type, IdentitySystemAssigned, IdentityNone).WithTarget("identity.type")
}

// setIdentity creates or deletes the vault's managed identity to match typ.
func (s *Service) setIdentity(ctx context.Context, tx store.Tx, v *VaultResource, typ string) error {
	had := v.Identity != nil && v.Identity.PrincipalID != ""
	switch {
	case typ == IdentitySystemAssigned && !had:
		p, err := s.Identities.CreateManagedIdentityTx(ctx, tx, v.ID, v.Name)
		if err != nil {
			return fmt.Errorf("create vault identity: %w", err)
		}
		tid := p.TenantID
		if tid == "" {
			tid = s.TenantID
		}
		v.Identity = &IdentityDetails{Type: IdentitySystemAssigned, PrincipalID: p.ID, TenantID: tid}
	case typ == IdentityNone && had:
		if err := s.dropIdentity(ctx, tx, v.Identity.PrincipalID); err != nil {
			return err
		}
		v.Identity = &IdentityDetails{Type: IdentityNone}
	case typ == IdentityNone:
		v.Identity = &IdentityDetails{Type: IdentityNone}
	}
	return nil
}

func (s *Service) dropIdentity(ctx context.Context, tx store.Tx, principalID string) error {
	if err := s.Authz.DeletePrincipal(ctx, tx, principalID); err != nil {
		return fmt.Errorf("delete vault identity's role assignments: %w", err)
	}
	if err := s.Identities.DeleteTx(ctx, tx, principalID); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete vault identity: %w", err)
	}
	return nil
}

// PutVault creates or replaces a vault. It reports whether it created it.
func (s *Service) PutVault(ctx context.Context, c Caller, id resource.ID, body []byte) (VaultResource, bool, error) {
	if err := resource.VaultNameRule.Check("InvalidResourceName", id.Name()); err != nil {
		return VaultResource{}, false, err
	}
	in, err := decodeVault(body)
	if err != nil {
		return in, false, err
	}
	if err := resource.CheckTags(in.Tags); err != nil {
		return in, false, err
	}
	loc, err := s.Groups.CheckLocation(in.Location, "LocationNotAvailableForResourceType", "resource type '"+VaultResourceType+"'")
	if err != nil {
		return in, false, err
	}
	storage, err := s.checkStorage(in.Properties.StorageSettings)
	if err != nil {
		return in, false, err
	}
	idType, err := checkIdentityType(in.Identity)
	if err != nil {
		return in, false, err
	}
	var out VaultResource
	created := false
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		created = false // a re-run (store contract) decides afresh
		if _, err := s.Groups.GetGroup(ctx, tx, id.GroupScope()); err != nil {
			return err
		}
		old, err := s.getVault(ctx, tx, id)
		switch {
		case err == nil:
			if old.Location != loc {
				return resource.Errorf(resource.KindConflict, "InvalidResourceLocation",
					"The resource '%s' already exists in location '%s' in resource group '%s'. A resource with the same name cannot be created in location '%s'. Please select a new resource name.",
					id.Name(), old.Location, id.ResourceGroup, loc)
			}
		case resource.IsCode(err, "ResourceNotFound"):
			created = true
			old = VaultResource{ID: id.String(), Name: id.Name()}
		default:
			return err
		}
		v := old
		v.Type = VaultResourceType
		v.Location = loc
		v.Tags = in.Tags
		v.Properties = in.Properties
		v.Properties.StorageSettings = storage
		v.Properties.ProvisioningState = "Succeeded"
		v.Properties.SecureScore = "Adequate"
		v.Properties.ResourceMoveState = ""
		v.SystemData = s.stamp(old.SystemData, c)
		if err := s.setIdentity(ctx, tx, &v, idType); err != nil {
			return err
		}
		out = v
		return putJSON(ctx, tx, kindVault, id.Key(), v)
	})
	return out, created, err
}

// PatchVault updates tags, identity and the settings PATCH allows
// (storageSettings cannot be patched).
func (s *Service) PatchVault(ctx context.Context, c Caller, id resource.ID, body []byte) (VaultResource, error) {
	var in struct {
		Tags       map[string]string `json:"tags"`
		Identity   *IdentityDetails  `json:"identity"`
		Properties *struct {
			FeatureSettings    json.RawMessage `json:"featureSettings"`
			MonitoringSettings json.RawMessage `json:"monitoringSettings"`
			SecuritySettings   json.RawMessage `json:"securitySettings"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return VaultResource{}, userError("InvalidRequestContent", "The request content was invalid and could not be deserialized: %v", err)
	}
	if err := resource.CheckTags(in.Tags); err != nil {
		return VaultResource{}, err
	}
	var out VaultResource
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		v, err := s.getVault(ctx, tx, id)
		if err != nil {
			return err
		}
		if in.Tags != nil {
			v.Tags = in.Tags
		}
		if in.Identity != nil {
			t, err := checkIdentityType(in.Identity)
			if err != nil {
				return err
			}
			if err := s.setIdentity(ctx, tx, &v, t); err != nil {
				return err
			}
		}
		if p := in.Properties; p != nil {
			if p.FeatureSettings != nil {
				v.Properties.FeatureSettings = p.FeatureSettings
			}
			if p.MonitoringSettings != nil {
				v.Properties.MonitoringSettings = p.MonitoringSettings
			}
			if p.SecuritySettings != nil {
				v.Properties.SecuritySettings = p.SecuritySettings
			}
		}
		v.SystemData = s.stamp(v.SystemData, c)
		out = v
		return putJSON(ctx, tx, kindVault, id.Key(), v)
	})
	return out, err
}

// GetVault returns a vault.
func (s *Service) GetVault(ctx context.Context, id resource.ID) (VaultResource, error) {
	var v VaultResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		v, err = s.getVault(ctx, tx, id)
		return err
	})
	return v, err
}

// ListVaults lists the vaults of a subscription or group (scope).
func (s *Service) ListVaults(ctx context.Context, scope resource.ID) ([]VaultResource, error) {
	var out []VaultResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		all, err := listJSON[VaultResource](ctx, tx, kindVault, scope.Key()+"/")
		if err != nil {
			return err
		}
		for _, v := range all {
			vid, err := resource.Parse(v.ID)
			if err == nil && vid.IsType(VaultResourceType) {
				out = append(out, v)
			}
		}
		return nil
	})
	return out, err
}

// DeleteVault deletes a vault; it is refused while the vault holds backup
// instances. It reports whether the vault existed.
func (s *Service) DeleteVault(ctx context.Context, id resource.ID) (bool, error) {
	existed := false
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		existed = false // a re-run (store contract) decides afresh
		v, err := s.getVault(ctx, tx, id)
		if resource.IsCode(err, "ResourceNotFound") {
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		bis, err := listJSON[instanceRecord](ctx, tx, kindInstance, id.Key()+"/backupinstances/")
		if err != nil {
			return err
		}
		if len(bis) > 0 {
			names := make([]string, 0, len(bis))
			for _, b := range bis {
				names = append(names, b.Resource.Name)
			}
			return withUserFacing(resource.Errorf(resource.KindConflict, CodeVaultNotEmpty,
				"The backup vault '%s' cannot be deleted because it contains %d backup instance(s): %s. Delete the backup instances first.",
				id.Name(), len(bis), strings.Join(names, ", ")))
		}
		if v.Identity != nil && v.Identity.PrincipalID != "" {
			if err := s.dropIdentity(ctx, tx, v.Identity.PrincipalID); err != nil {
				return err
			}
		}
		objs, err := tx.List(ctx, store.Query{Prefix: id.Key() + "/"})
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := tx.Delete(ctx, o.Kind, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return tx.Delete(ctx, kindVault, id.Key())
	})
	return existed, err
}
