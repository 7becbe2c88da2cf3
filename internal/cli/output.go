package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

// column is one table/tsv column: a header and how to get the cell.
type column[T any] struct {
	header string
	cell   func(T) string
}

func col[T any](header string, cell func(T) string) column[T] { return column[T]{header, cell} }

// printList prints items as the chosen output format.
func printList[T any](e *Env, items []T, cols ...column[T]) error {
	switch e.output {
	case outNone:
		return nil
	case outJSON:
		if items == nil {
			items = []T{}
		}
		return printJSON(e, items)
	case outTSV:
		for _, it := range items {
			cells := make([]string, len(cols))
			for i, c := range cols {
				cells[i] = c.cell(it)
			}
			fmt.Fprintln(e.Stdout, strings.Join(cells, "\t"))
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	heads := make([]string, len(cols))
	rules := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.header
		rules[i] = strings.Repeat("-", len(c.header))
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	fmt.Fprintln(tw, strings.Join(rules, "\t"))
	for _, it := range items {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = c.cell(it)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printOne prints one item: JSON for json output, a one-row table else.
func printOne[T any](e *Env, item T, cols ...column[T]) error {
	if e.output == outJSON {
		return printJSON(e, item)
	}
	return printList(e, []T{item}, cols...)
}

func printJSON(e *Env, v any) error {
	if e.output == outNone {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = fmt.Fprintln(e.Stdout, string(b))
	return err
}

// printValue prints one value on a line of its own (an ID, a URL), unless
// the output is none.
func printValue(e *Env, v string) error {
	if e.output == outNone {
		return nil
	}
	_, err := fmt.Fprintln(e.Stdout, v)
	return err
}

// showsSecret refuses -o none for a command whose output holds a secret
// that is shown only once (what names it): the secret would be lost. It is
// called before the command changes anything.
func showsSecret(e *Env, what string) error {
	if e.output == outNone {
		return usagef("--output none would discard the new %s, which is shown only once; nothing was created", what)
	}
	return nil
}
