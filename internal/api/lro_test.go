package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"coffer/internal/operation"
	"coffer/internal/resource"
)

// TestOperationResultStatus checks the Location answers the Azure SDK's
// pollers act on: 202 while running, 2xx on success, and on failure the
// error's status — but never a 5xx or 429, which the SDK retries forever.
func TestOperationResultStatus(t *testing.T) {
	s := &Server{}
	req := &Request{HTTP: httptest.NewRequest("GET", "/subscriptions/s/operationresults/x?api-version=2021-04-01", nil), BaseURL: "https://h"}
	tests := []struct {
		rec  operation.Record
		want int
	}{
		{operation.Record{Status: operation.InProgress}, http.StatusAccepted},
		{operation.Record{Status: operation.Succeeded}, http.StatusNoContent},
		{operation.Record{Status: operation.Succeeded, Result: []byte(`{"jobId":"j"}`)}, http.StatusOK},
		{operation.Record{Status: operation.Failed, Error: resource.Errorf(resource.KindConflict, "C", "c")}, http.StatusConflict},
		{operation.Record{Status: operation.Failed, Error: resource.Errorf(resource.KindBadRequest, "B", "b")}, http.StatusBadRequest},
		{operation.Record{Status: operation.Failed, Error: resource.Errorf(resource.KindInternal, "OperationInterrupted", "i")}, http.StatusConflict},
		{operation.Record{Status: operation.Failed, Error: resource.Errorf(resource.KindTooManyRequests, "T", "t")}, http.StatusConflict},
		{operation.Record{Status: operation.Canceled}, http.StatusConflict},
	}
	for _, tt := range tests {
		resp, err := s.operationResult(context.Background(), req, tt.rec)
		if err != nil || resp.Status != tt.want {
			t.Errorf("%s %v: status %d, want %d", tt.rec.Status, tt.rec.Error, resp.Status, tt.want)
		}
		if tt.want == http.StatusAccepted && resp.Header.Get("Location") == "" {
			t.Error("202 without a Location to poll")
		}
	}
}
