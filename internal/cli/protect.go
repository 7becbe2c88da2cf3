package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"coffer/internal/client"
	"coffer/internal/identity"
)

// The roles a vault identity needs (Azure's built-in GUIDs).
const (
	roleDiskBackupReader        = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	roleDiskSnapshotContributor = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
	roleDiskRestoreOperator     = "b50d9833-a0cb-478e-945f-707fcc997c13"
)

var roleNames = map[string]string{
	roleDiskBackupReader:        "Disk Backup Reader",
	roleDiskSnapshotContributor: "Disk Snapshot Contributor",
	roleDiskRestoreOperator:     "Disk Restore Operator",
}

// neededRole is a role the vault identity needs at a scope.
type neededRole struct {
	Role   string `json:"role"`
	RoleID string `json:"roleDefinitionId"`
	Scope  string `json:"scope"`
	// AssignAt is where --grant-missing-roles assigns it.
	AssignAt string `json:"assignAt"`
}

// missingRoles returns the required roles the principal has at no scope at
// or above the required one (inherited assignments count).
func missingRoles(ctx context.Context, c *client.Client, principal string, needs []neededRole) ([]neededRole, error) {
	var out []neededRole
	for _, n := range needs {
		as, err := c.ListRoleAssignments(ctx, n.Scope, client.EqFilter("principalId", principal))
		if err != nil {
			return nil, err
		}
		found := false
		for _, a := range as {
			sc := strings.ToLower(strings.TrimSuffix(a.Properties.Scope, "/"))
			target := strings.ToLower(n.Scope)
			if strings.HasSuffix(strings.ToLower(a.Properties.RoleDefinitionID), n.RoleID) && (target == sc || strings.HasPrefix(target, sc+"/")) {
				found = true
			}
		}
		if !found {
			out = append(out, n)
		}
	}
	return out, nil
}

func protectCommand() *command {
	var f dpFlags
	var diskID, diskGroup, diskName, snapGroup, policy, level string
	var grant, template bool
	return &command{name: "protect", short: "Protect a disk: validate, show or grant the missing roles, create the backup instance",
		flags: func(fs *flag.FlagSet) {
			f.bindInstance(fs, "name of the new backup instance (default: <disk>-<disk>-<guid>, as the Azure CLI names it)")
			fs.StringVar(&diskID, "disk-id", "", "ARM ID of the disk")
			fs.StringVar(&diskGroup, "disk-group", "", "resource group of the disk (with --disk-name)")
			fs.StringVar(&diskName, "disk-name", "", "disk name (with --disk-group)")
			fs.StringVar(&snapGroup, "snapshot-group", "", "snapshot resource group (name in the disk's subscription, or ARM ID)")
			fs.StringVar(&policy, "policy", "", "backup policy name")
			fs.BoolVar(&grant, "grant-missing-roles", false, "assign the missing roles to the vault's identity")
			fs.StringVar(&level, "permissions-scope", "Resource", "where --grant-missing-roles assigns: Resource, ResourceGroup or Subscription")
			fs.BoolVar(&template, "print-role-template", false, "print the coffer role assignment create commands for the missing roles and stop")
		},
		run: runWithClient(func() error {
			return required("resource-group", f.group, "vault-name", f.vault, "policy", policy, "snapshot-group", snapGroup)
		}, func(ctx context.Context, e *Env, c *client.Client) error {
			if diskID == "" {
				if diskGroup == "" || diskName == "" {
					return usagef("give --disk-id, or --disk-group and --disk-name")
				}
				diskID = "/subscriptions/" + c.Subscription + "/resourceGroups/" + diskGroup + "/providers/Microsoft.Compute/disks/" + diskName
			}
			disk := diskID[strings.LastIndex(diskID, "/")+1:]
			diskSub := strings.Split(strings.Trim(diskID, "/"), "/")[1]
			if !strings.HasPrefix(snapGroup, "/") {
				snapGroup = "/subscriptions/" + diskSub + "/resourceGroups/" + snapGroup
			}
			v, err := c.GetVault(ctx, f.group, f.vault)
			if err != nil {
				return err
			}
			if v.PrincipalID() == "" {
				return fmt.Errorf("the vault %s has no managed identity", f.vault)
			}
			pol, err := c.GetPolicy(ctx, f.group, f.vault, policy)
			if err != nil {
				return err
			}
			if f.name == "" {
				f.name = disk + "-" + disk + "-" + identity.NewGUID()
			}
			needs := []neededRole{
				{Role: roleNames[roleDiskBackupReader], RoleID: roleDiskBackupReader, Scope: diskID},
				{Role: roleNames[roleDiskSnapshotContributor], RoleID: roleDiskSnapshotContributor, Scope: snapGroup},
			}
			missing, err := missingRoles(ctx, c, v.PrincipalID(), needs)
			if err != nil {
				return err
			}
			for i := range missing {
				missing[i].AssignAt = client.PermissionsScope(missing[i].Scope, level)
			}
			if len(missing) > 0 {
				switch {
				case template:
					for _, m := range missing {
						if err := printValue(e, fmt.Sprintf("coffer role assignment create --assignee %s --role %q --scope %s", v.PrincipalID(), m.Role, m.AssignAt)); err != nil {
							return err
						}
					}
					return nil
				case grant:
					for _, m := range missing {
						if _, err := c.CreateRoleAssignment(ctx, m.AssignAt, identity.NewGUID(),
							"/subscriptions/"+c.Subscription+"/providers/Microsoft.Authorization/roleDefinitions/"+m.RoleID, v.PrincipalID(), "ServicePrincipal"); err != nil {
							return fmt.Errorf("assign %s at %s: %w", m.Role, m.AssignAt, err)
						}
						fmt.Fprintf(e.Stderr, "Assigned %s to the vault identity %s at %s\n", m.Role, v.PrincipalID(), m.AssignAt)
					}
				default:
					fmt.Fprintf(e.Stderr, "The vault identity %s is missing these role assignments:\n", v.PrincipalID())
					printList(&Env{Stdout: e.Stderr, output: outTable}, missing,
						col("Role", func(m neededRole) string { return m.Role }),
						col("Scope", func(m neededRole) string { return m.Scope }))
					return fmt.Errorf("missing role assignments: run again with --grant-missing-roles (and --permissions-scope), or --print-role-template for someone who may assign roles")
				}
			}
			body := client.InstanceBody(diskID, v.Location, pol.ID, snapGroup)
			if _, err := c.ValidateForBackup(ctx, f.group, f.vault, body); err != nil {
				return err
			}
			bi, err := c.PutInstance(ctx, f.group, f.vault, f.name, body)
			if err != nil {
				return err
			}
			return printOne(e, bi, instanceCols...)
		})}
}
