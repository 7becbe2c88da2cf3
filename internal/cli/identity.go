package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"coffer/internal/client"
	"coffer/internal/identity"
)

func principalCommand() *command {
	var display, id string
	var yes bool
	cols := []column[client.Principal]{
		col("PrincipalId", func(p client.Principal) string { return p.PrincipalID }),
		col("Kind", func(p client.Principal) string { return p.Kind }),
		col("DisplayName", func(p client.Principal) string { return p.DisplayName }),
		col("ClientId", func(p client.Principal) string { return p.ClientID }),
	}
	return &command{name: "principal", short: "Manage principals (service principals, users, managed identities)", sub: []*command{
		{name: "create", short: "Create a service principal; prints its client secret once",
			flags: func(fs *flag.FlagSet) { fs.StringVar(&display, "display-name", "", "display name") },
			run: runWithClient(func() error { return required("display-name", display) },
				func(ctx context.Context, e *Env, c *client.Client) error {
					if err := showsSecret(e, "client secret"); err != nil {
						return err
					}
					p, err := c.CreateServicePrincipal(ctx, display)
					if err != nil {
						return err
					}
					if e.output != outJSON {
						fmt.Fprintln(e.Stderr, "The client secret is shown only now; store it safely.")
					}
					return printOne(e, p, append(cols, col("ClientSecret", func(p client.Principal) string { return p.ClientSecret }),
						col("TenantId", func(p client.Principal) string { return p.TenantID }))...)
				})},
		{name: "list", short: "List principals",
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Principal, error) { return c.ListPrincipals(ctx) }, cols)},
		{name: "delete", short: "Delete a principal and its role assignments",
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&id, "id", "", "principal ID")
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmed(func() error { return required("id", id) }, &yes,
				func() string {
					return fmt.Sprintf("Delete principal %s, its credentials and its role assignments?", id)
				},
				func(ctx context.Context, e *Env, c *client.Client) error { return c.DeletePrincipal(ctx, id) })},
	}}
}

func roleCommand() *command {
	var name, assignee, role, scope, group, ids string
	defCols := []column[client.RoleDefinition]{
		col("RoleName", func(d client.RoleDefinition) string { return d.Properties.RoleName }),
		col("Name", func(d client.RoleDefinition) string { return d.Name }),
		col("Type", func(d client.RoleDefinition) string { return d.Properties.Type }),
	}
	// printAssignments prints role assignments, with their roles by name
	// in tables (JSON keeps the server's answer). A caller who may not read
	// the role definitions at sc sees role IDs, and a note why.
	printAssignments := func(ctx context.Context, e *Env, c *client.Client, sc string, as []client.RoleAssignment) error {
		names := map[string]string{}
		if len(as) > 0 && (e.output == outTable || e.output == outTSV) {
			ds, err := c.ListRoleDefinitions(ctx, sc, "")
			if err != nil {
				fmt.Fprintf(e.Stderr, "Roles are shown by ID: the role definitions could not be read: %v\n", err)
			}
			for _, d := range ds {
				names[strings.ToLower(d.Name)] = d.Properties.RoleName
			}
		}
		return printList(e, as,
			col("Name", func(a client.RoleAssignment) string { return a.Name }),
			col("Principal", func(a client.RoleAssignment) string { return a.Properties.PrincipalID }),
			col("Role", func(a client.RoleAssignment) string {
				if n := names[strings.ToLower(roleGUID(a.Properties.RoleDefinitionID))]; n != "" {
					return n
				}
				return roleGUID(a.Properties.RoleDefinitionID)
			}),
			col("Scope", func(a client.RoleAssignment) string { return a.Properties.Scope }))
	}
	scopeFlags := func(fs *flag.FlagSet) {
		fs.StringVar(&scope, "scope", "", "scope: /subscriptions/…[/resourceGroups/…[/providers/…]]")
		stringFlag(fs, &group, "resource-group", "g", "", "resource group (scope shorthand)")
	}
	resolveScope := func(c *client.Client) (string, error) {
		switch {
		case scope != "" && group != "":
			return "", usagef("give --scope or --resource-group, not both")
		case scope != "":
			return scope, nil
		case c.Subscription == "":
			return "", usagef("no subscription: pass --subscription or --scope")
		case group != "":
			return "/subscriptions/" + c.Subscription + "/resourceGroups/" + group, nil
		}
		return "/subscriptions/" + c.Subscription, nil
	}
	// scoped is runWithClient for commands that act at the scope the
	// flags name.
	scoped := func(need func() error, fn func(ctx context.Context, e *Env, c *client.Client, scope string) error) runFunc {
		return runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
			sc, err := resolveScope(c)
			if err != nil {
				return err
			}
			return fn(ctx, e, c, sc)
		})
	}
	return &command{name: "role", short: "Role definitions and assignments", sub: []*command{
		{name: "definition", short: "Role definitions", sub: []*command{
			{name: "list", short: "List role definitions",
				flags: func(fs *flag.FlagSet) { fs.StringVar(&name, "name", "", "only the role with this name") },
				run: scoped(nil, func(ctx context.Context, e *Env, c *client.Client, sc string) error {
					ds, err := c.ListRoleDefinitions(ctx, sc, name)
					if err != nil {
						return err
					}
					return printList(e, ds, defCols...)
				})},
		}},
		{name: "assignment", short: "Role assignments", sub: []*command{
			{name: "create", short: "Assign a role to a principal at a scope",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&assignee, "assignee", "", "principal ID")
					fs.StringVar(&role, "role", "", "role name (e.g. Reader) or role definition GUID")
					scopeFlags(fs)
				},
				run: scoped(func() error { return required("assignee", assignee, "role", role) },
					func(ctx context.Context, e *Env, c *client.Client, sc string) error {
						roleID, err := resolveRole(ctx, c, sc, role)
						if err != nil {
							return err
						}
						a, err := c.CreateRoleAssignment(ctx, sc, identity.NewGUID(), roleID, assignee, "")
						if err != nil {
							return err
						}
						if e.output == outJSON {
							return printJSON(e, a)
						}
						return printAssignments(ctx, e, c, sc, []client.RoleAssignment{a})
					})},
			{name: "list", short: "List role assignments at, above and below a scope",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&assignee, "assignee", "", "only this principal's assignments")
					scopeFlags(fs)
				},
				run: scoped(nil, func(ctx context.Context, e *Env, c *client.Client, sc string) error {
					filter := ""
					if assignee != "" {
						filter = client.EqFilter("principalId", assignee)
					}
					as, err := c.ListRoleAssignments(ctx, sc, filter)
					if err != nil {
						return err
					}
					return printAssignments(ctx, e, c, sc, as)
				})},
			{name: "delete", short: "Delete role assignments by ID, or by assignee/role/scope",
				flags: func(fs *flag.FlagSet) {
					fs.StringVar(&ids, "ids", "", "space-separated role assignment IDs")
					fs.StringVar(&assignee, "assignee", "", "principal ID")
					fs.StringVar(&role, "role", "", "role name or GUID")
					scopeFlags(fs)
				},
				run: runWithClient(nil, func(ctx context.Context, e *Env, c *client.Client) error {
					targets := strings.Fields(ids)
					if len(targets) == 0 {
						if err := required("assignee", assignee); err != nil {
							return usagef("give --ids, or --assignee (with --role and --scope to narrow it)")
						}
						sc, err := resolveScope(c)
						if err != nil {
							return err
						}
						as, err := c.ListRoleAssignments(ctx, sc, client.EqFilter("principalId", assignee))
						if err != nil {
							return err
						}
						roleID := ""
						if role != "" {
							if roleID, err = resolveRole(ctx, c, sc, role); err != nil {
								return err
							}
						}
						for _, a := range as {
							if !strings.EqualFold(a.Properties.Scope, sc) {
								continue
							}
							if roleID != "" && !strings.EqualFold(roleGUID(a.Properties.RoleDefinitionID), roleGUID(roleID)) {
								continue
							}
							targets = append(targets, a.ID)
						}
						if len(targets) == 0 {
							return &client.Error{StatusCode: 404, Code: "RoleAssignmentNotFound", Message: "No matching role assignment was found."}
						}
					}
					for _, id := range targets {
						if err := c.DeleteRoleAssignment(ctx, id); err != nil {
							return err
						}
						fmt.Fprintf(e.Stderr, "Deleted %s\n", id)
					}
					return nil
				})},
		}},
	}}
}

func roleGUID(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// resolveRole turns a role name or GUID into a role definition ID.
func resolveRole(ctx context.Context, c *client.Client, scope, role string) (string, error) {
	if identity.IsGUID(role) || strings.Contains(role, "/") {
		return role, nil
	}
	ds, err := c.ListRoleDefinitions(ctx, scope, role)
	if err != nil {
		return "", err
	}
	if len(ds) == 0 {
		return "", &client.Error{StatusCode: 404, Code: "RoleDefinitionDoesNotExist", Message: fmt.Sprintf("No role named %q exists.", role)}
	}
	return ds[0].ID, nil
}
