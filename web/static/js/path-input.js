// The ROOM/NAME inputs of the front page: one fieldset of two inputs per
// form, read, checked and filled here.
import { SEGMENT } from './room.js';

/**
 * pathFields fills an empty <fieldset class="path" data-prefix="P"> with
 * the inputs P-room and P-name.
 */
export function pathFields(fieldset) {
  const prefix = fieldset.dataset.prefix;
  const field = (label, name, value) => {
    const input = document.createElement('input');
    Object.assign(input, { id: `${prefix}-${name}`, name, defaultValue: value, required: true, maxLength: 64 });
    Object.assign(input, { pattern: '[A-Za-z0-9_\\-]{1,64}', autocomplete: 'off', spellcheck: false });
    input.setAttribute('autocapitalize', 'off');
    const l = document.createElement('label');
    l.append(label, input);
    return l;
  };
  const legend = document.createElement('legend');
  legend.textContent = 'Stream path';
  const sep = document.createElement('span');
  sep.className = 'sep';
  sep.setAttribute('aria-hidden', 'true');
  sep.textContent = '/';
  fieldset.replaceChildren(legend, field('Room', 'room', 'demo'), sep, field('Name', 'name', 'cam'));
}

/** parsePath splits "ROOM/NAME" (slashes around it ignored), or null. */
export function parsePath(s) {
  const parts = (s || '').trim().replace(/^\/+|\/+$/g, '').split('/');
  if (parts.length !== 2 || !parts.every((p) => SEGMENT.test(p))) return null;
  return { room: parts[0], name: parts[1] };
}

// readPath validates a ROOM and NAME input pair and returns "room/name".
export function readPath(roomInput, nameInput) {
  let bad = null;
  for (const input of [roomInput, nameInput]) {
    input.value = input.value.trim();
    const ok = SEGMENT.test(input.value);
    input.setAttribute('aria-invalid', String(!ok));
    if (!ok && !bad) bad = input;
  }
  if (bad) {
    bad.focus();
    const what = bad === roomInput ? 'Room' : 'Name';
    throw new Error(`${what} must be 1–64 characters of A–Z, a–z, 0–9, _ and -`);
  }
  return `${roomInput.value}/${nameInput.value}`;
}

export function fill(roomInput, nameInput, p) {
  roomInput.value = p.room;
  nameInput.value = p.name;
}
