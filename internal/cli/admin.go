package cli

import (
	"context"
	"fmt"
	"sort"

	"coffer/internal/client"
)

func adminCommand() *command {
	runOp := func(op, done string) runFunc {
		return runWithClient(nil, func(ctx context.Context, e *Env, c *client.Client) error {
			fmt.Fprintf(e.Stderr, "%s…\n", done)
			var out map[string]any
			if err := c.Admin(ctx, op, &out); err != nil {
				return err
			}
			if err := printKV(e, out); err != nil {
				return err
			}
			if ok, present := out["ok"].(bool); present && !ok {
				return fmt.Errorf("verify found problems: %v corrupt pack(s); affected snapshots: %v", len(asSlice(out["corruptPacks"])), out["affectedSnapshots"])
			}
			return nil
		})
	}
	return &command{name: "admin", short: "Storage maintenance (tenant administrators)", sub: []*command{
		{name: "verify", short: "Re-read every pack and check every chunk; name damaged packs, chunks and the snapshots they affect",
			run: runOp("verify", "Verifying every pack")},
		{name: "gc", short: "Collect garbage: reclaim chunks no snapshot references (after the safety margin)",
			run: runOp("gc", "Collecting garbage")},
		{name: "rebuild-index", short: "Rebuild the chunk index from the packs alone",
			run: runOp("rebuildIndex", "Rebuilding the chunk index from pack trailers")},
		{name: "stats", short: "Show the chunk store's size",
			run: runWithClient(nil, func(ctx context.Context, e *Env, c *client.Client) error {
				out, err := c.AdminStats(ctx)
				if err != nil {
					return err
				}
				return printKV(e, out)
			})},
	}}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// printKV prints a flat JSON object as JSON, or as "key  value" lines.
func printKV(e *Env, m map[string]any) error {
	if e.output == outJSON {
		return printJSON(e, m)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([][2]string, 0, len(keys))
	for _, k := range keys {
		v := fmt.Sprint(m[k])
		if f, ok := m[k].(float64); ok && f == float64(int64(f)) {
			v = fmt.Sprint(int64(f)) // JSON numbers decode as float64; counts are integers
		}
		rows = append(rows, [2]string{k, v})
	}
	return printRows(e, rows)
}

// printRows prints (property, value) rows as a table or tsv.
func printRows(e *Env, rows [][2]string) error {
	return printList(e, rows, col("Property", func(r [2]string) string { return r[0] }), col("Value", func(r [2]string) string { return r[1] }))
}
