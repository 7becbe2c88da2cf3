package monitor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// KindTarget is the store kind of notification targets.
const KindTarget = "Coffer.Monitor/notificationTargets"

// Target kinds.
const (
	KindWebhook = "Webhook"
	KindEmail   = "Email"
)

// Target is a notification target: where alerts are delivered. Targets are
// the tenant administrator's: they receive every alert of the server.
type Target struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // Webhook or Email
	// Webhook: the URL alerts are POSTed to (JSON, signed with the
	// target's secret).
	URL string `json:"url,omitempty"`
	// Email: the SMTP server (host:port, STARTTLS required), the sender,
	// the recipients and the login (the password is the target's secret).
	SMTPServer string   `json:"smtpServer,omitempty"`
	From       string   `json:"from,omitempty"`
	To         []string `json:"to,omitempty"`
	Username   string   `json:"username,omitempty"`
	// CACertificate is a PEM bundle trusted, besides the system's roots,
	// for the webhook's HTTPS or the SMTP server's STARTTLS certificate.
	CACertificate string `json:"caCertificate,omitempty"`
	// SealedSecret is the webhook's signing secret or the SMTP password,
	// sealed (see Sealer); it is never returned.
	SealedSecret string `json:"sealedSecret,omitempty"`

	CreatedAt    time.Time       `json:"createdAt"`
	CreatedBy    string          `json:"createdBy"`
	ModifiedAt   time.Time       `json:"modifiedAt"`
	LastDelivery *DeliveryStatus `json:"lastDelivery,omitempty"`
}

// HasSecret reports whether the target has a secret.
func (t Target) HasSecret() bool { return t.SealedSecret != "" }

// DeliveryStatus is the outcome of the latest delivery to a target.
type DeliveryStatus struct {
	Time     time.Time `json:"time"`
	AlertID  string    `json:"alertId,omitempty"`
	Event    Condition `json:"event,omitempty"`
	Status   string    `json:"status"` // Delivered, Retrying, Failed
	Attempts int       `json:"attempts"`
	Error    string    `json:"error,omitempty"`
}

// Delivery statuses.
const (
	Delivered = "Delivered"
	Retrying  = "Retrying"
	Failed    = "Failed"
)

// TargetInput is a target to create or replace. Secret, when empty, keeps
// a replaced target's secret; a new webhook without one gets a generated
// secret (returned once by PutTarget).
type TargetInput struct {
	Name          string
	Kind          string
	URL           string
	SMTPServer    string
	From          string
	To            []string
	Username      string
	CACertificate string
	Secret        string
}

var targetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func targetKey(name string) string { return "/notificationtargets/" + strings.ToLower(name) }

// CheckTargetName checks a target name: 1-64 letters, digits, '.', '_' or
// '-', starting with a letter or digit.
func CheckTargetName(name string) error {
	if !targetNameRE.MatchString(name) {
		return resource.Errorf(resource.KindBadRequest, "InvalidResourceName",
			"The notification target name '%s' is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.", name)
	}
	return nil
}

func invalid(target, format string, args ...any) error {
	return resource.Errorf(resource.KindBadRequest, "InvalidParameter", format, args...).WithTarget(target)
}

func noControl(target, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return invalid(target, "properties.%s must not contain line breaks.", target)
	}
	return nil
}

// checkTarget validates the shape of a target and returns it normalised.
func checkTarget(in TargetInput) (TargetInput, error) {
	if err := CheckTargetName(in.Name); err != nil {
		return in, err
	}
	switch {
	case strings.EqualFold(in.Kind, KindWebhook):
		in.Kind = KindWebhook
		u, err := url.Parse(in.URL)
		if in.URL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
			return in, invalid("properties.url", "properties.url %q must be an absolute http:// or https:// URL.", in.URL)
		}
		if u.User != nil {
			return in, invalid("properties.url", "properties.url must not carry credentials: the webhook authenticates the server by the signature made with the target's secret.")
		}
		if u.Fragment != "" {
			return in, invalid("properties.url", "properties.url must not have a fragment.")
		}
		if in.SMTPServer != "" || in.From != "" || len(in.To) > 0 || in.Username != "" {
			return in, invalid("properties.kind", "A Webhook target takes url, secret and caCertificate only.")
		}
	case strings.EqualFold(in.Kind, KindEmail):
		in.Kind = KindEmail
		host, port, err := net.SplitHostPort(in.SMTPServer)
		if err != nil || host == "" || port == "" {
			return in, invalid("properties.smtpServer", "properties.smtpServer %q must be host:port (for example smtp.example.com:587).", in.SMTPServer)
		}
		if in.URL != "" {
			return in, invalid("properties.kind", "An Email target takes no url.")
		}
		if err := noControl("from", in.From); err != nil {
			return in, err
		}
		if _, err := mail.ParseAddress(in.From); err != nil {
			return in, invalid("properties.from", "properties.from %q is not an email address.", in.From)
		}
		if len(in.To) == 0 || len(in.To) > 50 {
			return in, invalid("properties.to", "properties.to must list 1 to 50 recipients.")
		}
		for i, to := range in.To {
			if err := noControl("to", to); err != nil {
				return in, err
			}
			if _, err := mail.ParseAddress(to); err != nil {
				return in, invalid(fmt.Sprintf("properties.to[%d]", i), "properties.to[%d] %q is not an email address.", i, to)
			}
		}
		if err := noControl("username", in.Username); err != nil {
			return in, err
		}
	default:
		return in, invalid("properties.kind", "properties.kind %q is not supported: use Webhook or Email.", in.Kind)
	}
	if len(in.Secret) > 1024 {
		return in, invalid("properties.secret", "properties.secret is longer than 1024 characters.")
	}
	if len(in.CACertificate) > 64<<10 {
		return in, invalid("properties.caCertificate", "properties.caCertificate is larger than 64 KiB.")
	}
	return in, nil
}

func getTarget(ctx context.Context, tx store.Tx, name string) (Target, error) {
	var t Target
	o, err := tx.Get(ctx, KindTarget, targetKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return t, targetNotFound(name)
	}
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(o.Data, &t); err != nil {
		return t, fmt.Errorf("decode notification target %s: %w", name, err)
	}
	return t, nil
}

func putTarget(ctx context.Context, tx store.Tx, t Target, opts store.PutOptions) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode notification target %s: %w", t.Name, err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: KindTarget, Key: targetKey(t.Name), Data: b}, opts); err != nil {
		return fmt.Errorf("put notification target %s: %w", t.Name, err)
	}
	return nil
}

func listTargets(ctx context.Context, tx store.Tx) ([]Target, error) {
	objs, err := tx.List(ctx, store.Query{Kind: KindTarget, Prefix: "/notificationtargets/"})
	if err != nil {
		return nil, fmt.Errorf("list notification targets: %w", err)
	}
	out := make([]Target, 0, len(objs))
	for _, o := range objs {
		var t Target
		if err := json.Unmarshal(o.Data, &t); err != nil {
			return nil, fmt.Errorf("decode notification target %s: %w", o.Key, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// ErrTargetNotFound is wrapped by the not-found error of a target.
var ErrTargetNotFound = errors.New("notification target not found")

func targetNotFound(name string) error {
	e := resource.Errorf(resource.KindNotFound, "ResourceNotFound", "The notification target '%s' was not found.", name)
	e.Err = ErrTargetNotFound
	return e
}

// NewSecret returns a random webhook signing secret.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// PutTarget creates or replaces a notification target for the principal
// by. It returns the target, the webhook secret it generated (shown once;
// empty when the caller gave one or kept the old one) and whether it
// created the target.
func (s *Service) PutTarget(ctx context.Context, in TargetInput, by string) (Target, string, bool, error) {
	in, err := checkTarget(in)
	if err != nil {
		return Target{}, "", false, err
	}
	if s.Sealer == nil {
		return Target{}, "", false, errors.New("monitor: no sealing key for notification secrets")
	}
	var out Target
	var generated string
	created := false
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		generated, created = "", false
		now := s.Clock.Now().UTC()
		old, err := getTarget(ctx, tx, in.Name)
		switch {
		case err == nil:
		case errors.Is(err, ErrTargetNotFound):
			created = true
			old = Target{CreatedAt: now, CreatedBy: by}
		default:
			return err
		}
		t := Target{Name: in.Name, Kind: in.Kind, URL: in.URL, SMTPServer: in.SMTPServer, From: in.From, To: in.To,
			Username: in.Username, CACertificate: in.CACertificate, CreatedAt: old.CreatedAt, CreatedBy: old.CreatedBy,
			ModifiedAt: now, LastDelivery: old.LastDelivery}
		if old.Name == "" {
			t.Name = in.Name
		} else {
			t.Name = old.Name // keep the casing it was created with
		}
		secret := in.Secret
		switch {
		case secret != "":
		case !created && old.Kind == t.Kind && old.SealedSecret != "":
			t.SealedSecret = old.SealedSecret
		case t.Kind == KindWebhook:
			if secret, err = NewSecret(); err != nil {
				return err
			}
			generated = secret
		}
		if secret != "" {
			if t.SealedSecret, err = s.Sealer.Seal(t.Name, secret); err != nil {
				return err
			}
		}
		if t.Kind == KindEmail && t.Username != "" && t.SealedSecret == "" {
			return invalid("properties.password", "properties.password is required with a username.")
		}
		out = t
		return putTarget(ctx, tx, t, store.PutOptions{})
	})
	if err != nil {
		return Target{}, "", false, err
	}
	s.logger().Info("notification target saved", "target", out.Name, "kind", out.Kind, "created", created, "principal", by)
	return out, generated, created, nil
}

// GetTarget returns a notification target.
func (s *Service) GetTarget(ctx context.Context, name string) (Target, error) {
	var out Target
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = getTarget(ctx, tx, name)
		return err
	})
	return out, err
}

// ListTargets lists the notification targets by name.
func (s *Service) ListTargets(ctx context.Context) ([]Target, error) {
	var out []Target
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = listTargets(ctx, tx)
		return err
	})
	return out, err
}

// DeleteTarget deletes a notification target; deliveries to it that are
// still queued are dropped when they come up. It reports whether the
// target existed.
func (s *Service) DeleteTarget(ctx context.Context, name, by string) (bool, error) {
	existed := false
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		existed = false
		err := tx.Delete(ctx, KindTarget, targetKey(name))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		existed = err == nil
		return err
	})
	if err == nil && existed {
		s.logger().Info("notification target deleted", "target", name, "principal", by)
	}
	return existed, err
}
