package web

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/livegate/livegate/egress/hls"
)

// TestHLSBusyIs503: a stream with too many requests waiting for its next
// part answers the excess 503 with its own code, which players retry.
func TestHLSBusyIs503(t *testing.T) {
	var ae *apiError
	if !errors.As(hlsError(fmt.Errorf("serve: %w", hls.ErrBusy)), &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != "hls_busy" {
		t.Fatalf("hlsError(ErrBusy) = %+v, want 503 hls_busy", ae)
	}
}
