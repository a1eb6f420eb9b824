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
	const adminKey = "admin-key-0123456789"
	g := startGateway(t, func(c *Config) {
		c.AuthMode, c.AuthKey, c.AdminKey = "on", testKey, adminKey
		c.RecorderParams.SegmentDuration = time.Second
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

	adminTok := token(t, "", "ops", time.Hour, auth.GrantAdmin)
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
