package server

import (
	"context"
	"strings"
	"testing"
)

func TestParsePublicEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"https://backup.example.com":       "https://backup.example.com",
		"https://backup.example.com:8443/": "https://backup.example.com:8443",
		"http://10.0.0.7:7480":             "http://10.0.0.7:7480",
		"https://[fd00::7]:7480":           "https://[fd00::7]:7480",
	} {
		if got, err := parsePublicEndpoint(in); err != nil || got != want {
			t.Errorf("parsePublicEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"backup.example.com", "ftp://backup.example.com", "https://", "https://u:p@backup.example.com",
		"https://backup.example.com/coffer", "https://backup.example.com/?x=1", "https://backup.example.com/#f", "https:backup", ":"} {
		if got, err := parsePublicEndpoint(in); err == nil || !strings.Contains(err.Error(), "--public-endpoint") {
			t.Errorf("parsePublicEndpoint(%q) = %q, %v; want an error naming the flag", in, got, err)
		}
	}
	if _, err := Open(context.Background(), Config{DataDir: t.TempDir(), PublicEndpoint: "backup.example.com"}); err == nil ||
		!strings.Contains(err.Error(), "--public-endpoint") {
		t.Fatalf("Open with a bad public endpoint: %v", err)
	}
}
