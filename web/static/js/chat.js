// The chat panel of the host and viewer pages.

import { MAX_CHAT_BYTES, utf8Length } from './room.js';

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/**
 * ChatPanel shows a room's messages and sends what is typed. It fills
 * section (an empty <section class="card chat">) with the list of messages
 * (#chat-list), with askName a name field for open gateways (#chat-name in
 * #chat-name-row, hidden until the page shows it), the form (#chat-text,
 * #chat-send) and a status line (#chat-msg). sender() returns {identity,
 * name} for open gateways (the token says who we are otherwise); me() is
 * our identity, to mark our own messages.
 */
export class ChatPanel {
  constructor(section, { sender = () => ({}), me = () => '', askName = false } = {}) {
    section.setAttribute('aria-labelledby', 'chat-title');
    section.innerHTML = `<h2 id="chat-title">Chat</h2>
      <ol id="chat-list" class="chat-list" aria-live="polite"></ol>
      ${askName ? `<label id="chat-name-row" class="chat-name" hidden>Your name
        <input id="chat-name" maxlength="64" placeholder="Guest" autocomplete="nickname"></label>` : ''}
      <form id="chat-form" class="chat-form">
        <textarea id="chat-text" rows="2" placeholder="Say something…" aria-label="Message"></textarea>
        <button type="submit" id="chat-send">Send</button>
      </form>
      <p id="chat-msg" class="msg"></p>`;
    const [list, form, input, status] = ['.chat-list', 'form', 'textarea', '.msg'].map((q) => section.querySelector(q));
    Object.assign(this, { list, form, input, status, sender, me });
    this.room = null;
    this.sending = false;
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.send(this.input.value);
    });
    input.addEventListener('input', () => this.checkLength());
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        this.send(this.input.value);
      }
    });
  }

  attach(room) {
    this.room = room;
    this.render(room.chat);
  }

  setEnabled(on, why = '') {
    this.input.disabled = !on;
    this.form.querySelector('button').disabled = !on;
    this.input.placeholder = on ? 'Say something…' : why;
  }

  // checkLength flags a message over the server's limit while it is typed.
  checkLength() {
    const n = utf8Length(this.input.value);
    const over = n > MAX_CHAT_BYTES;
    this.input.setAttribute('aria-invalid', String(over));
    if (over) this.say(`Too long: ${n} of ${MAX_CHAT_BYTES} bytes.`, true, 'length');
    else if (this.status.dataset.why === 'length') this.say('');
    return !over;
  }

  say(text, error = false, why = '') {
    this.status.textContent = text;
    this.status.classList.toggle('error', error);
    this.status.dataset.why = why;
  }

  /** Sends text; resolves to the message or null. */
  async send(text) {
    text = (text || '').trim();
    if (!text || !this.room || this.sending) return null;
    if (!this.checkLength()) return null;
    this.sending = true;
    try {
      const msg = await this.room.sendChat(text, this.sender());
      if (this.input.value.trim() === text) this.input.value = '';
      this.say('');
      return msg;
    } catch (err) {
      this.say(err.message, true);
      return null;
    } finally {
      this.sending = false;
    }
  }

  render(messages) {
    this.list.replaceChildren(...messages.map((m) => this.item(m)));
    this.scroll();
  }

  add(m) {
    if (this.list.querySelector(`[data-id="${m.id}"]`)) return;
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(this.item(m));
    while (this.list.children.length > 200) this.list.firstElementChild.remove();
    if (stick) this.scroll();
  }

  scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  item(m) {
    const li = document.createElement('li');
    li.dataset.id = m.id;
    li.dataset.identity = m.identity;
    if (m.identity === this.me()) li.classList.add('mine');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.name || m.identity;
    who.title = m.verified ? `${m.identity} (from a token)` : `${m.identity} (unverified: open gateway)`;
    const when = document.createElement('time');
    when.dateTime = m.at;
    when.textContent = timeFmt.format(new Date(m.at));
    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = m.text; // never HTML
    li.append(who);
    if (!m.verified) {
      const u = document.createElement('span');
      u.className = 'unverified';
      u.textContent = 'unverified';
      li.append(u);
    }
    li.append(when, text);
    return li;
  }
}
