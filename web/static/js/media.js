// Opening the camera and microphone, and messages for getUserMedia
// failures, shared by the pages that capture.

/** What the pages ask of a camera: 720p at 30 frames a second. */
export const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

/**
 * openMedia opens the camera and microphone (video and audio are their
 * constraints), else whichever of them exists. It throws an Error whose
 * message a person can act on.
 */
export async function openMedia(video = CAMERA, audio = true) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot capture the camera here (it needs https or localhost).');
  }
  let first = null;
  for (const c of [{ video, audio }, { video }, { audio }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      first ??= err;
      if (err.name !== 'NotFoundError' && err.name !== 'OverconstrainedError') break;
    }
  }
  throw new Error(mediaError(first));
}

/** A sentence a person can act on for a getUserMedia error. */
export function mediaError(err) {
  switch (err.name) {
    case 'NotAllowedError':
      return 'Camera and microphone access was denied. Allow it in the browser and try again.';
    case 'NotFoundError':
      return 'No camera or microphone found.';
    case 'NotReadableError':
      return 'The camera or microphone is in use by another application.';
    case 'OverconstrainedError':
      return 'The selected device is not available.';
    default:
      return `Cannot open the camera: ${err.message || err.name}`;
  }
}
