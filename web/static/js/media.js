// Messages for getUserMedia failures, shared by the pages that capture.

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
