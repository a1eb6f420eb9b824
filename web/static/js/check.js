// The connectivity self-test: from this browser, try each way media can
// reach the gateway (UDP to the media port, TCP to it, each TURN server the
// gateway hands out) with a short data-channel connection, and say in plain
// words what works and what to change. window.check has the results for
// tests: {state: 'running'|'done', verdict, case: 'udp'|'tcp'|'turn'|'none',
// results: [{name, ok, detail}]}.
import { api } from './api.js';
import { iceGathered, parseIceLinks } from './whip-whep.js';

const TIMEOUT_MS = 6000;
const el = {
  verdict: document.getElementById('verdict'),
  results: document.getElementById('results'),
  again: document.getElementById('again'),
};
const state = (window.check = { state: 'idle', verdict: '', case: '', results: [] });

// tryPath connects once: transport picks the gateway's candidates (udp,
// tcp or any); iceServers with relayOnly forces a TURN relay.
async function tryPath(transport, iceServers = [], relayOnly = false) {
  const started = performance.now();
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
  try {
    const dc = pc.createDataChannel('check');
    const opened = new Promise((resolve) => dc.addEventListener('message', resolve, { once: true }));
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, relayOnly ? 3000 : 1000);
    const res = await fetch(`/check/ice/${transport}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) return { ok: false, detail: `the gateway answered ${res.status}` };
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    const failed = new Promise((resolve) =>
      pc.addEventListener('connectionstatechange', () => pc.connectionState === 'failed' && resolve('failed')),
    );
    const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), TIMEOUT_MS));
    const outcome = await Promise.race([opened.then(() => 'ok'), failed, timeout]);
    if (outcome !== 'ok') return { ok: false, detail: outcome === 'failed' ? 'connection failed' : 'no answer (blocked)' };
    const ms = Math.round(performance.now() - started);
    return { ok: true, detail: `connected in ${ms} ms${await pairText(pc)}` };
  } catch (err) {
    return { ok: false, detail: String(err.message || err) };
  } finally {
    pc.close();
  }
}

async function pairText(pc) {
  try {
    const st = await pc.getStats();
    let text = '';
    st.forEach((s) => {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
      const p = st.get(s.selectedCandidatePairId);
      const l = st.get(p.localCandidateId);
      const r = st.get(p.remoteCandidateId);
      const rtt = p.currentRoundTripTime ? `, round trip ${Math.round(p.currentRoundTripTime * 1000)} ms` : '';
      text = ` (${l.candidateType}${l.relayProtocol ? ' via ' + l.relayProtocol : ''} to ${r.protocol} ${r.address}:${r.port}${rtt})`;
    });
    return text;
  } catch {
    return '';
  }
}

function row(name, r) {
  const tr = document.createElement('tr');
  tr.dataset.ok = String(r.ok);
  for (const text of [name, r.ok ? 'works' : r.skipped ? 'not offered' : 'blocked', r.detail]) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  el.results.append(tr);
}

function turnName(url) {
  const u = url.toLowerCase();
  const proto = u.startsWith('turns:') ? 'TLS' : /transport=tcp/.test(u) ? 'TCP' : 'UDP';
  return `TURN over ${proto} (${url.replace(/\?.*/, '')})`;
}

async function run() {
  state.state = 'running';
  state.results = [];
  el.results.textContent = '';
  el.verdict.textContent = 'Testing… (up to 10 seconds)';
  el.again.disabled = true;

  let info;
  let servers = [];
  try {
    const res = await api('/check/servers');
    if (!res.ok) throw new Error(`status ${res.status}`);
    info = await res.json();
    servers = parseIceLinks(res.headers.get('Link'));
    state.results.push({ name: 'HTTP', ok: true, detail: `this page and the gateway's API answer at ${location.host}` });
  } catch (err) {
    state.results.push({ name: 'HTTP', ok: false, detail: String(err.message || err) });
    return finish(null);
  }

  const turn = servers.filter((s) => /^turns?:/i.test(s.urls));
  const tests = [
    info.udpPort
      ? tryPath('udp').then((r) => ({ name: `UDP to port ${info.udpPort}`, kind: 'udp', ...r }))
      : { name: 'UDP media', kind: 'udp', ok: false, skipped: true, detail: 'off on this gateway' },
    info.tcpPort
      ? tryPath('tcp').then((r) => ({ name: `TCP to port ${info.tcpPort}`, kind: 'tcp', ...r }))
      : { name: 'TCP media', kind: 'tcp', ok: false, skipped: true, detail: 'off on this gateway' },
    ...turn.map((s) => tryPath('any', [s], true).then((r) => ({ name: turnName(s.urls), kind: 'turn', ...r }))),
  ];
  if (!turn.length) tests.push({ name: 'TURN relay', kind: 'turn', ok: false, skipped: true, detail: 'the gateway hands out no TURN server' });
  state.results.push(...(await Promise.all(tests)));
  finish(info);
}

function finish(info) {
  const ok = (kind) => state.results.some((r) => r.kind === kind && r.ok);
  const turnOffered = state.results.some((r) => r.kind === 'turn' && !r.skipped);
  const host = info?.host || location.hostname;
  if (!info) {
    state.case = 'none';
    state.verdict = 'The gateway does not answer over HTTP from here: check its address, your proxy or VPN.';
  } else if (ok('udp')) {
    state.case = 'udp';
    state.verdict = 'Everything works: media flows over UDP, the fastest path.';
  } else if (ok('tcp')) {
    state.case = 'tcp';
    state.verdict =
      `Your network blocks UDP, but media gets through over TCP to port ${info.tcpPort}: publishing and watching work. ` +
      `On a lossy network video may stall a little more than over UDP; allowing UDP port ${info.udpPort} to ${host} would avoid that.`;
  } else if (ok('turn')) {
    const via = state.results.filter((r) => r.kind === 'turn' && r.ok).map((r) => r.name).join(', ');
    state.case = 'turn';
    state.verdict =
      `Your network blocks UDP and TCP to the media port, but media gets through the TURN relay (${via}): ` +
      `publishing and watching work, with a little more delay. Allowing TCP port ${info.tcpPort || info.udpPort} to ${host} would give a direct path.`;
  } else {
    state.case = 'none';
    state.verdict =
      `No way for media from this network. Ask its administrator to allow ${ports(info)} to ${host}` +
      (turnOffered
        ? ', or TCP to the TURN ports listed below.'
        : ', or ask the gateway operator to turn on TURN over TLS on port 443 (turn-tls), which passes most firewalls.');
  }
  for (const r of state.results) row(r.name, r);
  el.verdict.textContent = state.verdict;
  el.verdict.dataset.case = state.case;
  el.again.disabled = false;
  state.state = 'done';
}

function ports(info) {
  const p = [];
  if (info.udpPort) p.push(`UDP port ${info.udpPort}`);
  if (info.tcpPort) p.push(`TCP port ${info.tcpPort}`);
  return p.join(' or ') || 'the media ports';
}

el.again.addEventListener('click', run);
run();
