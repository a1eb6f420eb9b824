// Camera and microphone choice for the host page: constraints from the
// device selects, and the selects filled from the browser's device list.

import { CAMERA } from './media.js';

// videoConstraints asks for 720p30 from the selected camera (any if none).
export function videoConstraints(select) {
  const id = select.value;
  return { ...CAMERA, ...(id ? { deviceId: { exact: id } } : {}) };
}

// audioConstraints asks for the selected microphone (any if none).
export function audioConstraints(select) {
  const id = select.value;
  return id ? { deviceId: { exact: id } } : true;
}

// fillDeviceSelects lists the cameras and microphones, keeping each
// select's choice (or the device media uses) when it is still there.
export async function fillDeviceSelects(cameraSelect, micSelect, media) {
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    return;
  }
  const fill = (select, kind, current) => {
    const list = devices.filter((d) => d.kind === kind);
    const keep = select.value || current;
    select.replaceChildren(
      ...list.map((d, i) => {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`;
        return o;
      }),
    );
    if (!list.length) {
      const o = document.createElement('option');
      o.value = '';
      o.textContent = kind === 'videoinput' ? 'No camera' : 'No microphone';
      select.append(o);
    }
    if (keep && list.some((d) => d.deviceId === keep)) select.value = keep;
  };
  fill(cameraSelect, 'videoinput', media?.getVideoTracks()[0]?.getSettings().deviceId);
  fill(micSelect, 'audioinput', media?.getAudioTracks()[0]?.getSettings().deviceId);
}
