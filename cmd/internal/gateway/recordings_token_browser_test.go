package gateway

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/web/auth"
)

// With tokens required, the /recordings page (opened with an admin token)
// lists with a header and plays each recording through the playback URL
// the API hands out: a token for that recording only, never the admin
// token, which the gateway refuses in URLs.
func TestRecordingsPagePlaysWithPlaybackToken(t *testing.T) {
	b := browserTest(t, 90*time.Second)
	if b == nil {
		return
	}
	g, id, adminTok := recordedWithTokens(t, 0)
	tab, _ := b.tab(t, "recordings")
	b.navigate(t, tab, g.base+"/recordings?access_token="+url.QueryEscape(adminTok))
	link := waitPage(t, tab, 10*time.Second, "the recording's play link",
		`document.querySelector('#list a')?.getAttribute('href') || ''`,
		func(s string) (bool, error) { return s != "", nil })
	u, err := url.Parse(link)
	if err != nil || u.Path != "/recordings/"+id+"/index.m3u8" || u.Query().Get("access_token") == "" ||
		strings.Contains(link, url.QueryEscape(adminTok)) || strings.Contains(link, adminTok) {
		t.Fatalf("play link %q: want the playlist with a playback token (not the admin token)", link)
	}
	// What the page's player fetches, without a header: the playlist and
	// the segments it names; and the admin token in the URL is refused.
	got := waitPage(t, tab, 10*time.Second, "playlist and segment fetched with the playback token", `
		(window.__pb ??= (async () => {
			const link = document.querySelector('#list a').href;
			const pl = await fetch(link);
			const text = await pl.text();
			const seg = text.split('\n').find(l => l && !l.startsWith('#'));
			const s = await fetch(new URL(seg, link));
			const admin = await fetch('/recordings/`+id+`/index.m3u8?access_token=' + encodeURIComponent(`+"`"+adminTok+"`"+`));
			return pl.status + ' ' + s.status + ' ' + admin.status + ' ' + text.startsWith('#EXTM3U');
		})().then(v => window.__pbr = v, e => window.__pbr = 'error ' + e)), window.__pbr || ''`,
		func(s string) (bool, error) { return s != "", nil })
	if got != "200 200 401 true" {
		t.Fatalf("playlist, segment, admin token in URL: %q, want \"200 200 401 true\"", got)
	}
}

// A page left open longer than the playback URL lives asks for a new one
// when play is clicked, instead of handing the player a refused URL.
func TestRecordingsPageRenewsExpiredPlaybackURL(t *testing.T) {
	b := browserTest(t, 90*time.Second)
	if b == nil {
		return
	}
	g, _, adminTok := recordedWithTokens(t, 2*time.Second)
	tab, _ := b.tab(t, "recordings")
	b.navigate(t, tab, g.base+"/recordings?access_token="+url.QueryEscape(adminTok))
	listed := waitPage(t, tab, 10*time.Second, "the recording's play link",
		`document.querySelector('#list a')?.href || ''`,
		func(s string) (bool, error) { return s != "", nil })
	time.Sleep(8 * time.Second) // the listed URL has expired (2 s, and the 5 s leeway tokens get)
	got := waitPage(t, tab, 10*time.Second, "play clicked after the URL expired", `
		(window.__renew ??= (async () => {
			const old = await fetch(`+"`"+listed+"`"+`);
			document.querySelector('#list a').click();
			const player = document.getElementById('player');
			for (let i = 0; i < 100 && (!player.src || player.src === `+"`"+listed+"`"+`); i++) await new Promise(r => setTimeout(r, 50));
			const now = await fetch(player.src);
			return old.status + ' ' + now.status + ' ' + (player.src !== `+"`"+listed+"`"+`);
		})().then(v => window.__renewr = v, e => window.__renewr = 'error ' + e)), window.__renewr || ''`,
		func(s string) (bool, error) { return s != "", nil })
	if got != "401 200 true" {
		t.Fatalf("listed URL after expiry, the URL play used, renewed: %q, want \"401 200 true\"", got)
	}
}

// recordedWithTokens starts a gateway that requires tokens (playback URLs
// living ttl; 0: the default), records a few seconds of the clip and
// returns the gateway, the finished recording's id and an admin token.
func recordedWithTokens(t *testing.T, ttl time.Duration) (*testGateway, string, string) {
	t.Helper()
	const adminKey = "admin-key-0123456789"
	g := startGateway(t, func(c *Config) {
		c.AuthMode, c.AuthKey, c.AdminKey = "on", testKey, adminKey
		c.RecorderParams.SegmentDuration = time.Second
		c.WebParams.PlaybackTokenTTL = ttl
	})
	c := loadClip(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := clientOpts(t)
	o.Token = token(t, "rec", "page", time.Hour, auth.GrantPublish)
	pub, err := rtcclient.Publish(ctx, g.base+"/whip/rec/page", o, rtcclient.H264ConstrainedBaseline, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Close(context.Background()) }()
	waitConnected(t, pub.PC)
	go play(ctx, pub, c, 0)
	id := g.recordFinished(t, "rec/page", adminKey)
	return g, id, token(t, "", "ops", time.Hour, auth.GrantAdmin)
}
