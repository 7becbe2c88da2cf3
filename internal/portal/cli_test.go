package portal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
)

// command is a form's CLI equivalent with the form's fields set to
// values, as the page's script shows it (values need no quoting here).
func (p *page) command(form string, values map[string]string) []string {
	var b strings.Builder
	p.Find(form + " code[data-cli]").Contents().Each(func(_ int, n *goquery.Selection) {
		if f, ok := n.Attr("data-field"); ok {
			if v, set := values[f]; set {
				b.WriteString(v)
				return
			}
		}
		b.WriteString(n.Text())
	})
	return strings.Fields(b.String())
}

// TestCLIEquivalentsRun runs the commands the create forms show, with the
// CLI itself: what a person would paste creates what the form creates.
func TestCLIEquivalentsRun(t *testing.T) {
	s := newSite(t)
	s.coffer("group", "create", "-n", "rg1", "-l", "local")
	b := s.signedIn()

	vault := b.getOK("/vaults/new").command("#vault-form", map[string]string{"name": "from-cli"})
	if strings.Join(vault, " ") != "coffer vault create --resource-group rg1 --name from-cli --location local" {
		t.Fatalf("vault form's command: %q", vault)
	}
	s.coffer(vault[1:]...)
	if _, err := s.admin.GetVault(context.Background(), "rg1", "from-cli"); err != nil {
		t.Fatalf("the vault form's command made no vault: %v", err)
	}

	disk := b.getOK("/disks/new").command("#disk-form", map[string]string{"name": "cli-disk", "size": "3"})
	s.coffer(disk[1:]...)
	d, err := s.admin.GetDisk(context.Background(), "rg1", "cli-disk")
	if err != nil || d.Properties.DiskSizeGB != 3 {
		t.Fatalf("the disk form's command: %v %+v", err, d.Properties)
	}

	grant := b.getOK("/disks/"+s.sub()+"/rg1/cli-disk").command("#grant-form", nil)
	if out := s.coffer(grant[1:]...); !strings.Contains(out, "nbd://") {
		t.Fatalf("the grant form's command printed %q", out)
	}
}
