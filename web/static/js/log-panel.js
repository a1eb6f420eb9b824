// LogPanel is a page's event log: the last entries in a list element (with
// their time), errors also on the console, and the entries kept for tests.
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export class LogPanel {
  constructor(list, max = 300) {
    this.list = list;
    this.max = max;
    this.entries = [];
  }

  add(level, text) {
    const entry = { at: new Date(), level, text };
    this.entries.push(entry);
    if (this.entries.length > this.max) this.entries.shift();
    const li = document.createElement('li');
    li.dataset.level = level;
    const t = document.createElement('time');
    t.textContent = timeFmt.format(entry.at);
    li.append(t, ` ${text}`);
    this.list.append(li);
    while (this.list.children.length > this.max) this.list.firstElementChild.remove();
    this.list.scrollTop = this.list.scrollHeight;
    if (level === 'error') console.error(text);
  }
}
