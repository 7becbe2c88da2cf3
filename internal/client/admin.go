package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Admin runs a Coffer.Admin operation ("verify", "gc", "rebuildIndex"),
// waits for it and decodes its result into out.
func (c *Client) Admin(ctx context.Context, op string, out any) error {
	body, err := c.doWait(ctx, http.MethodPost, "/providers/Coffer.Admin/"+op, IdentityVersion, nil)
	if err != nil {
		return err
	}
	if out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("decode %s result: %w", op, err)
		}
	}
	return nil
}

// AdminStats returns the chunk store's statistics.
func (c *Client) AdminStats(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	_, err := c.Do(ctx, http.MethodGet, "/providers/Coffer.Admin/stats", IdentityVersion, nil, nil, &out)
	return out, err
}
