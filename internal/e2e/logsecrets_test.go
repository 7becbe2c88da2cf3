package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/notify/notifytest"
	"coffer/internal/rbac"
)

// lockedBuffer is a log sink for a server's many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoSecret runs a full flow with the server's log captured at
// debug level — logins with a client secret (and a wrong one), an API
// token and a bad one, a SAS grant written and read, an NBD URL read and a
// revoked one refused, a backup, a restore, notification targets with a
// webhook secret and an SMTP password, a failing webhook whose URL carries
// tokens — and checks that the log holds none of the secrets and tokens
// used, nor the server's key files in any common encoding, while it does
// hold the lines operators need: the principal of every request, each
// refusal, and each job's start and end.
func TestLogsHoldNoSecret(t *testing.T) {
	ctx := context.Background()
	logs := &lockedBuffer{}
	env := Start(t, Options{Log: logs})
	// The grant and token-signing keys are secrets every node shares, kept
	// in the metadata store; notify.key is a file of the data dir.
	keys := map[string][]byte{}
	for f, name := range map[string]string{"grant key": "grant-key", "signing key": "token-signing-key"} {
		b, err := env.Server.SharedSecret(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		keys[f] = b
	}
	if seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(keys["signing key"]))); err == nil {
		keys["signing key seed"] = seed // stored as a base64 Ed25519 seed
	}
	nk, err := os.ReadFile(filepath.Join(env.DataDir, "notify.key")) // raw random bytes
	if err != nil {
		t.Fatal(err)
	}
	keys["notify.key"] = nk
	mk, err := os.ReadFile(filepath.Join(env.DataDir, "master.key")) // base64 text
	if err != nil {
		t.Fatal(err)
	}
	keys["master.key"] = bytes.TrimSpace(mk)
	if raw, err := base64.StdEncoding.DecodeString(string(keys["master.key"])); err == nil {
		keys["master key bytes"] = raw
	}
	admin := env.Client("")
	// The monitor writes the job lines from the store; its first
	// evaluation (on a new data dir) must come before the first job.
	if err := env.Server.Monitor().Tick(ctx); err != nil {
		t.Fatal(err)
	}

	// A service principal logs in with its secret, makes an API token and
	// works with it; it owns the subscription.
	bot := newPrincipal(t, env, "flow-bot")
	sub := "/subscriptions/" + env.Admin.SubscriptionID
	if _, err := admin.CreateRoleAssignment(ctx, sub, newGUID(), sub+"/providers/Microsoft.Authorization/roleDefinitions/"+rbac.RoleOwner,
		bot.id, "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	access, err := admin.ClientCredentials(ctx, env.Admin.TenantID, bot.clientID, bot.secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ClientCredentials(ctx, env.Admin.TenantID, bot.clientID, bot.secret+"-wrong"); err == nil {
		t.Fatal("a wrong client secret logged in")
	}
	if _, err := env.Client(access).ListGroups(ctx); err != nil {
		t.Fatal(err)
	}
	bad := "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW5vdC12YWxpZA"
	if _, err := env.Client(bad).ListGroups(ctx); err == nil {
		t.Fatal("a forged token was accepted")
	}
	c := bot.c

	createGroups(t, ctx, c, "rg-disks", "rg-snaps", "rg-vault", "rg-restore")
	disk, err := c.CreateDisk(ctx, "rg-disks", "data", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.GrantAccess(ctx, client.Disks, "rg-disks", "data", "Write", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte{0x5a}, 64<<10)
	if err := c.PutPages(ctx, g.AccessSAS, 0, page); err != nil {
		t.Fatal(err)
	}
	if b, err := c.ReadRange(ctx, g.AccessSAS, 0, 4096); err != nil || b[0] != 0x5a {
		t.Fatalf("SAS read: %v", err)
	}
	u, _ := url.Parse(g.NBDURL)
	nc, err := nbdtest.Dial(ctx, u.Host, strings.TrimPrefix(u.Path, "/"), nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := nc.ReadAt(buf, 0); err != nil || buf[0] != 0x5a {
		t.Fatalf("NBD read: %v", err)
	}
	nc.Disconnect()
	sasToken := sigOf(t, g.AccessSAS)
	nbdToken := strings.TrimPrefix(u.Path, "/")
	if err := c.RevokeAccess(ctx, client.Disks, "rg-disks", "data"); err != nil {
		t.Fatal(err)
	}
	if _, err := nbdtest.Dial(ctx, u.Host, nbdToken, nbdtest.Options{}); err == nil {
		t.Fatal("a revoked NBD URL was served")
	}
	if _, err := c.ReadRange(ctx, g.AccessSAS, 0, 512); err == nil {
		t.Fatal("a revoked SAS URL was served")
	}

	// Backup and restore.
	bi := protectDisk(t, ctx, c, disk.ID, "rg-vault", "vault", "rg-snaps", "rg-restore", 4)
	id, err := c.BackupNow(ctx, bi.rg, bi.vault, bi.name, "BackupIntervals", "Default")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJobDone(t, ctx, c, bi.rg, bi.vault, id); j.Properties.Status != "Completed" {
		t.Fatalf("backup: %+v", j.Properties)
	}
	rps, err := c.ListRecoveryPoints(ctx, bi.rg, bi.vault, bi.name, "")
	if err != nil || len(rps) != 1 {
		t.Fatalf("recovery points: %v %v", rps, err)
	}
	target := sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/back"
	rid, err := c.Restore(ctx, bi.rg, bi.vault, bi.name, client.RestoreRequest(rps[0].Name, target, "local"))
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJobDone(t, ctx, c, bi.rg, bi.vault, rid); j.Properties.Status != "Completed" {
		t.Fatalf("restore: %+v", j.Properties)
	}
	rg, err := c.GrantAccess(ctx, client.Disks, "rg-restore", "back", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.ReadRange(ctx, rg.AccessSAS, 0, 4096); err != nil || b[0] != 0x5a {
		t.Fatalf("restored disk: %v", err)
	}

	// Notification targets with a given webhook secret and an SMTP password.
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer hook.Close()
	smtp := notifytest.StartSMTP(t)
	smtp.User, smtp.Password = "mailer", "smtp-password-4711"
	const hookSecret = "webhook-secret-0815"
	if _, err := admin.PutNotificationTarget(ctx, "hook", client.NotificationTargetSpec{Kind: "Webhook", URL: hook.URL, Secret: hookSecret}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutNotificationTarget(ctx, "mail", client.NotificationTargetSpec{Kind: "Email", SMTPServer: smtp.Addr, From: "c@example.com",
		To: []string{"ops@example.com"}, Username: smtp.User, Password: smtp.Password, CACertificate: smtp.CAPEM}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"hook", "mail"} {
		if r, err := admin.TestNotificationTarget(ctx, n); err != nil || r.Status != "Delivered" {
			t.Fatalf("test %s: %+v %v", n, r, err)
		}
	}
	// A receiver that puts its token in the URL's path and query (as many
	// do), and fails: the failure is reported without them.
	const pathToken, queryToken = "T0KEN-in-the-path-4242", "t0ken-in-the-query-4343"
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer failing.Close()
	if _, err := admin.PutNotificationTarget(ctx, "failing", client.NotificationTargetSpec{Kind: "Webhook",
		URL: failing.URL + "/hooks/" + pathToken + "?code=" + queryToken}); err != nil {
		t.Fatal(err)
	}
	if r, err := admin.TestNotificationTarget(ctx, "failing"); err != nil || r.Status != "Failed" || strings.Contains(r.Error, pathToken) {
		t.Fatalf("test of a failing target: %+v %v", r, err)
	}
	if err := env.Server.Monitor().Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// A denied request.
	if _, err := newPrincipal(t, env, "nobody").c.GetGroup(ctx, "rg-disks"); client.AsError(err) == nil {
		t.Fatal("a principal without a role read a group")
	}
	env.Stop()

	log := logs.String()
	secrets := map[string]string{
		"admin client secret": env.Admin.ClientSecret, "admin API token": env.Admin.Token,
		"bot client secret": bot.secret, "bot API token": bot.token, "bot access token": access,
		"forged token": bad, "SAS grant token": sasToken, "NBD grant token": nbdToken, "restore SAS token": sigOf(t, rg.AccessSAS),
		"webhook secret": hookSecret, "SMTP password": smtp.Password, "webhook URL's path token": pathToken,
		"webhook URL's query token": queryToken,
	}
	// An SMTP client sends its password base64-encoded (AUTH PLAIN).
	secrets["SMTP AUTH PLAIN"] = base64.StdEncoding.EncodeToString([]byte("\x00" + smtp.User + "\x00" + smtp.Password))
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("%s is empty", what)
		}
		if strings.Contains(log, s) {
			t.Errorf("the log holds the %s", what)
		}
		// A JWT's signature alone identifies it too.
		if parts := strings.Split(s, "."); len(parts) == 3 && strings.Contains(log, parts[2]) {
			t.Errorf("the log holds the signature of the %s", what)
		}
	}
	for f, key := range keys {
		for enc, form := range keyForms(key) {
			if strings.Contains(log, form) {
				t.Errorf("the log holds %s (%s)", f, enc)
			}
		}
	}
	// What the log must say.
	for _, want := range []string{
		`msg=request`, "principal=" + bot.id,
		`msg="security: authentication failed" event=authentication_failed surface=oauth`, "client=" + bot.clientID,
		`event=authentication_failed surface=api`, `event=authentication_failed surface=nbd`, `event=authentication_failed surface=data`,
		`msg="security: authorization denied" event=authorization_denied surface=api`, "action=Microsoft.Resources/subscriptions/resourceGroups/read",
		`msg="data request"`, "grant=",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	// Each job's start and end, with what an operator needs.
	instance := sub + "/resourceGroups/" + bi.rg + "/providers/Microsoft.DataProtection/backupVaults/" + bi.vault + "/backupInstances/" + bi.name
	for _, j := range []struct{ id, op, bytes string }{{id, "Backup", "bytes=65536"}, {rid, "Restore", "bytes="}} {
		common := []string{"/backupJobs/" + path.Base(j.id) + " ", "operation=" + j.op, "instance=" + instance, "principal=" + bot.id}
		if !hasLine(log, append(common, `msg="job started"`)...) {
			t.Errorf("no start line for the %s job", j.op)
		}
		if !hasLine(log, append(common, `msg="job ended"`, "outcome=Completed", "duration=", j.bytes)...) {
			t.Errorf("no end line for the %s job", j.op)
		}
	}
	if t.Failed() {
		os.WriteFile(filepath.Join(t.TempDir(), "server.log"), []byte(log), 0o600)
		t.Logf("log:\n%s", log)
	}
}

// sigOf returns the sig parameter (the grant token) of a SAS URL.
func sigOf(t *testing.T, sas string) string {
	t.Helper()
	u, err := url.Parse(sas)
	if err != nil || u.Query().Get("sig") == "" {
		t.Fatalf("SAS URL %q", sas)
	}
	return u.Query().Get("sig")
}

// keyForms returns the ways a key's bytes could show in a log: raw, as Go
// quotes them (slog's text handler), in hex and in base64 — for base64 the
// encoding of the key's first 30 bytes, which every base64 text of the key
// (or of a longer value it begins, such as an Ed25519 private key) starts
// with.
func keyForms(key []byte) map[string]string {
	p := key[:30]
	return map[string]string{"raw": string(key), "quoted": strconv.Quote(string(key)), "hex": hex.EncodeToString(key),
		"HEX": strings.ToUpper(hex.EncodeToString(key)), "base64": base64.StdEncoding.EncodeToString(p),
		"base64url": base64.RawURLEncoding.EncodeToString(p)}
}

// hasLine reports whether a line of log holds every one of parts.
func hasLine(log string, parts ...string) bool {
	for line := range strings.Lines(log) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
