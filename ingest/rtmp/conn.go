package rtmp

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// serverConn is the server side of one RTMP connection up to the start of
// publishing. gortmplib's ServerConn answers "publish" with
// NetStream.Publish.Start before its caller can check the path or the
// token, so a refused publisher only ever saw a broken pipe. This one asks
// first and refuses with an error status carrying the reason, which
// ffmpeg prints ("Server error: ...") and OBS reports as a failed
// connection. After Accept it is the gortmplib.Conn a gortmplib.Reader
// reads media from.
type serverConn struct {
	bc  *bytecounter.ReadWriter
	mrw *message.ReadWriter

	connectCSID byte
	connectID   int
	app, tcURL  string
}

// Status codes of a refused publish, as RTMP servers send them.
const (
	codeBadName      = "NetStream.Publish.BadName"      // bad path, or already published
	codeUnauthorized = "NetStream.Publish.Unauthorized" // token refused
	codePublishFail  = "NetStream.Publish.Failed"       // anything else
	codePlayFailed   = "NetStream.Play.Failed"
)

// refusedError is a publish (or play) refused with an RTMP status code.
type refusedError struct {
	Code string
	Err  error
}

func (e *refusedError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *refusedError) Unwrap() error { return e.Err }

// refuse wraps err with the status code a client is sent for it.
func refuse(code string, err error) error { return &refusedError{Code: code, Err: err} }

// handshake runs the RTMP handshake and reads the client's "connect".
func (c *serverConn) handshake(rw io.ReadWriter) error {
	c.bc = bytecounter.NewReadWriter(rw)
	keyIn, _, err := handshake.DoServer(c.bc, false)
	if err != nil {
		return err
	}
	if keyIn != nil {
		return errors.New("encrypted RTMP (RTMPE) is not supported; use rtmp:// or rtmps://")
	}
	c.mrw = message.NewReadWriter(c.bc, c.bc, false)
	cmd, err := c.readCommand()
	if err != nil {
		return err
	}
	if cmd.Name != "connect" {
		return fmt.Errorf("first command %q, want connect", cmd.Name)
	}
	var obj amf0.Object
	if len(cmd.Arguments) > 0 {
		switch o := cmd.Arguments[0].(type) {
		case amf0.Object:
			obj = o
		case amf0.ECMAArray:
			obj = amf0.Object(o)
		}
	}
	c.connectCSID, c.connectID = cmd.ChunkStreamID, cmd.CommandID
	var ok bool
	if c.app, ok = obj.GetString("app"); !ok {
		return errors.New("connect without app")
	}
	if c.tcURL, ok = obj.GetString("tcUrl"); !ok {
		c.tcURL, _ = obj.GetString("tcurl")
	}
	return nil
}

func (c *serverConn) readCommand() (*message.CommandAMF0, error) {
	for {
		msg, err := c.mrw.Read()
		if err != nil {
			return nil, err
		}
		if cmd, ok := msg.(*message.CommandAMF0); ok {
			return cmd, nil
		}
	}
}

// accept answers the connect and the commands up to "publish", whose path
// (app/key with their queries) check decides on before the client is told
// it may publish. A refusal is sent to the client as an error status with
// the reason and returned.
func (c *serverConn) accept(check func(u *url.URL) error) (*url.URL, error) {
	for _, m := range []message.Message{
		&message.SetWindowAckSize{Value: 2500000},
		&message.SetPeerBandwidth{Value: 2500000, Type: 2},
		&message.SetChunkSize{Value: 65536},
		&message.CommandAMF0{ChunkStreamID: c.connectCSID, Name: "_result", CommandID: c.connectID,
			Arguments: []any{
				amf0.Object{{Key: "fmsVer", Value: "LNX 9,0,124,2"}, {Key: "capabilities", Value: float64(31)}},
				amf0.Object{{Key: "level", Value: "status"}, {Key: "code", Value: "NetConnection.Connect.Success"},
					{Key: "description", Value: "Connection succeeded."}, {Key: "objectEncoding", Value: float64(0)}},
			}},
	} {
		if err := c.mrw.Write(m); err != nil {
			return nil, err
		}
	}
	for {
		cmd, err := c.readCommand()
		if err != nil {
			return nil, err
		}
		switch cmd.Name {
		case "createStream":
			if err := c.mrw.Write(&message.CommandAMF0{ChunkStreamID: cmd.ChunkStreamID, Name: "_result",
				CommandID: cmd.CommandID, Arguments: []any{nil, float64(1)}}); err != nil {
				return nil, err
			}
		case "play":
			err := refuse(codePlayFailed, errors.New("playing over RTMP is not supported; read over WHEP, HLS or RTSP"))
			return nil, c.status(cmd, err)
		case "publish":
			key := ""
			if len(cmd.Arguments) >= 2 {
				key, _ = cmd.Arguments[1].(string)
			}
			u, err := publishURL(c.app, key)
			if err == nil {
				err = check(u)
			}
			if err != nil {
				return nil, c.status(cmd, err)
			}
			return u, c.mrw.Write(&message.CommandAMF0{ChunkStreamID: 5, MessageStreamID: 0x1000000,
				Name: "onStatus", CommandID: cmd.CommandID, Arguments: []any{nil, amf0.Object{
					{Key: "level", Value: "status"}, {Key: "code", Value: "NetStream.Publish.Start"},
					{Key: "description", Value: "publish start"}}}})
		}
	}
}

// status sends err to the client as an onStatus error and returns err.
func (c *serverConn) status(cmd *message.CommandAMF0, err error) error {
	var re *refusedError
	if !errors.As(err, &re) {
		re = &refusedError{Code: codeBadName, Err: err}
		err = re
	}
	id := 0
	if cmd != nil {
		id = cmd.CommandID
	}
	if werr := c.mrw.Write(&message.CommandAMF0{ChunkStreamID: 5, MessageStreamID: 0x1000000,
		Name: "onStatus", CommandID: id, Arguments: []any{nil, amf0.Object{
			{Key: "level", Value: "error"}, {Key: "code", Value: re.Code},
			{Key: "description", Value: re.Err.Error()}}}}); werr != nil {
		return fmt.Errorf("%w (and telling the client: %v)", err, werr)
	}
	return err
}

// publishURL joins the application (the room) and the stream key (the
// name), either of which may carry a query (the token).
func publishURL(app, key string) (*url.URL, error) {
	appPath, appQuery, _ := strings.Cut(app, "?")
	keyPath, keyQuery, _ := strings.Cut(key, "?")
	u, err := url.Parse("/" + strings.Trim(appPath, "/") + "/" + strings.Trim(keyPath, "/"))
	if err != nil {
		return nil, refuse(codeBadName, fmt.Errorf("bad path %q: %w", app+"/"+key, err))
	}
	q := url.Values{}
	for _, raw := range []string{appQuery, keyQuery} {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return nil, refuse(codeBadName, fmt.Errorf("bad query %q: %w", raw, err))
		}
		for k, vs := range v {
			q[k] = append(q[k], vs...)
		}
	}
	u.RawQuery = q.Encode()
	return u, nil
}

// BytesReceived implements gortmplib.Conn.
func (c *serverConn) BytesReceived() uint64 { return c.bc.Reader.Count() }

// BytesSent implements gortmplib.Conn.
func (c *serverConn) BytesSent() uint64 { return c.bc.Writer.Count() }

// Read implements gortmplib.Conn.
func (c *serverConn) Read() (message.Message, error) { return c.mrw.Read() }

// Write implements gortmplib.Conn.
func (c *serverConn) Write(msg message.Message) error { return c.mrw.Write(msg) }
