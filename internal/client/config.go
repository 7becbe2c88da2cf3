package client

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config says where and how to reach the server.
type Config struct {
	Endpoint     string `json:"endpoint"`
	Token        string `json:"token"`
	Subscription string `json:"subscriptionId"`
	TenantID     string `json:"tenantId,omitempty"`
	// CACertificate is the PEM of a CA to trust for https endpoints.
	CACertificate string `json:"caCertificate,omitempty"`
	// TokenID is the ID of the API token that `coffer login` created for
	// the profile, which `coffer logout` revokes. It is empty for a token
	// the user brought (login --token) and in admin.json.
	TokenID string `json:"tokenId,omitempty"`
	// From says where each setting was found (for messages).
	From Sources `json:"-"`
}

// Where a setting was found.
const (
	SourceEnv       = "environment" // a COFFER_* variable
	SourceProfile   = "profile"     // the profile `coffer login` writes
	SourceAdminFile = "admin.json"  // the admin credentials of a local data directory
	SourceFlag      = "flag"        // a command-line flag
)

// Source says where one setting was found: its kind (SourceEnv,
// SourceProfile, SourceAdminFile or SourceFlag) and the variable, file or
// flag it was read from.
type Source struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func (s Source) String() string {
	if s.Kind == "" {
		return "nowhere"
	}
	return s.Kind + " " + s.Name
}

// Sources says where the endpoint, the token and the subscription of a
// Config were found.
type Sources struct {
	Endpoint     Source `json:"endpoint"`
	Token        Source `json:"token"`
	Subscription Source `json:"subscription"`
}

// Environment variables that override the files.
const (
	EnvEndpoint     = "COFFER_ENDPOINT"
	EnvToken        = "COFFER_TOKEN"
	EnvSubscription = "COFFER_SUBSCRIPTION"
	EnvProfile      = "COFFER_CONFIG"
	EnvData         = "COFFER_DATA"
)

// ErrNoConfig is returned by LoadConfig when nothing says where the server is.
var ErrNoConfig = errors.New("no Coffer endpoint configured: run `coffer login`, set COFFER_ENDPOINT and COFFER_TOKEN, or run from the directory holding coffer-data")

// ProfilePath is where `coffer login` writes its profile: $COFFER_CONFIG,
// else coffer/profile.json in the user's configuration directory.
func ProfilePath() string {
	if p := os.Getenv(EnvProfile); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "coffer", "profile.json")
}

// AdminFilePath is the admin.json of the local data directory:
// $COFFER_DATA/admin.json, else coffer-data/admin.json.
func AdminFilePath() string {
	data := os.Getenv(EnvData)
	if data == "" {
		data = "coffer-data"
	}
	return filepath.Join(data, "admin.json")
}

// LoadConfig finds the configuration. Its base is the login profile if
// there is one, else admin.json (see ProfilePath and AdminFilePath); each of
// COFFER_ENDPOINT, COFFER_TOKEN and COFFER_SUBSCRIPTION overrides its
// setting. Config.From says which source gave what.
func LoadConfig() (Config, error) {
	c, err := LoadFiles()
	if err != nil && (os.Getenv(EnvEndpoint) == "" || os.Getenv(EnvToken) == "") {
		return c, err // the environment does not make up for a broken file
	}
	if v := os.Getenv(EnvEndpoint); v != "" {
		c.Endpoint, c.From.Endpoint = v, Source{SourceEnv, EnvEndpoint}
	}
	if v := os.Getenv(EnvToken); v != "" {
		c.Token, c.From.Token = v, Source{SourceEnv, EnvToken}
	}
	if v := os.Getenv(EnvSubscription); v != "" {
		c.Subscription, c.From.Subscription = v, Source{SourceEnv, EnvSubscription}
	}
	if c.Endpoint == "" {
		return c, ErrNoConfig
	}
	return c, nil
}

// LoadFiles returns the configuration of the files alone, without the
// environment's overrides: the login profile if there is one, else
// admin.json, else an empty Config. A file that exists but cannot be read
// or is not a configuration is an error.
func LoadFiles() (Config, error) {
	c, err := LoadProfile()
	if errors.Is(err, fs.ErrNotExist) {
		c, err = loadFile(AdminFilePath(), SourceAdminFile)
		c.TokenID = "" // only a profile's token is the CLI's to revoke
	}
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, nil
	}
	return c, err
}

// LoadProfile returns the login profile alone; its error wraps
// fs.ErrNotExist when there is none.
func LoadProfile() (Config, error) { return loadFile(ProfilePath(), SourceProfile) }

// loadFile reads a configuration file of the given kind (SourceProfile or
// SourceAdminFile).
func loadFile(path, kind string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("read %s: %w", path, err)
	}
	if c.Endpoint == "" {
		return Config{}, fmt.Errorf("read %s: it names no endpoint", path)
	}
	src := Source{kind, path}
	c.From = Sources{Endpoint: src, Token: src, Subscription: src}
	return c, nil
}

// TokenExpiry returns when a token (a JWT) expires, read from its exp
// claim without checking its signature: for display only, the server
// decides. ok is false when the token is not a JWT with an expiry.
func TokenExpiry(token string) (exp time.Time, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0).UTC(), true
}

// SaveProfile writes c as the login profile (mode 0600) and returns its path.
func SaveProfile(c Config) (string, error) {
	p := ProfilePath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	// Write a new file and rename it over the old one, so that the profile
	// is never half-written and never readable by others, whatever the
	// mode of a file that was there before.
	tmp, err := os.CreateTemp(filepath.Dir(p), ".profile-*.json")
	if err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return p, fmt.Errorf("save profile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	return p, nil
}

// RemoveProfile deletes the login profile. It reports false, without an
// error, when there was none.
func RemoveProfile() (bool, error) {
	err := os.Remove(ProfilePath())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove profile: %w", err)
	}
	return true, nil
}
