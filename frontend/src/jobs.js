// Submitting inference / what-if jobs over REST and following them on the jobs websocket
// (state, progress and, when finished, the compact contour payload).
import { api } from "./api.js";

export function jobId(body) {
  return body ? body.job ?? body.id : null;
}

export async function submitJob(config, { kind, caseId, checkpoint, contextVersion, params }) {
  const body = { kind, case: caseId };
  if (checkpoint) body.checkpoint = checkpoint;
  if (contextVersion) body.context_version = contextVersion;
  if (params) body.params = params;
  return api(config.api.jobs, { method: "POST", body });
}

export async function fetchJob(config, id) {
  return api(config.api.job.replace("{id}", String(id)));
}

export async function fetchContour(config, id) {
  return api(config.api.job_contour.replace("{id}", String(id)));
}

const FINAL = ["succeeded", "failed", "cancelled"];

// Follow a job until it is final, resolving with its last state (and ``contour`` when it succeeded).
// The websocket (portal/jobs/consumers.py) first sends a snapshot of the current state, so a late
// client misses nothing; events older than what was seen (``seq``) are dropped. If the socket cannot
// be used, the REST resource is polled instead.
export function followJob(config, id, onEvent) {
  return new Promise((resolve) => {
    let done = false;
    let lastSeq = -1;
    let finishing = false;
    const finish = async (data) => {
      if (done || finishing) return;
      finishing = true;
      if (data.state === "succeeded" && !data.contour) {
        try {
          data = { ...data, contour: await fetchContour(config, id) };
        } catch (error) {
          data = { ...data, contour: null, error: `contour: ${error.message}` };
        }
      }
      done = true;
      resolve(data);
    };
    const handle = (data) => {
      if (!data || done || (data.job !== undefined && data.job !== id)) return;
      if (typeof data.seq === "number") {
        if (data.seq < lastSeq) return;
        lastSeq = data.seq;
      }
      onEvent(data);
      if (FINAL.includes(data.state)) finish(data);
    };
    const poll = async () => {
      while (!done) {
        try {
          handle(await fetchJob(config, id));
        } catch (error) {
          onEvent({ state: "error", message: error.message });
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${window.location.host}${config.api.job_ws.replace("{id}", String(id))}`);
    } catch {
      poll();
      return;
    }
    let polling = false;
    const fallBack = () => {
      if (!done && !polling) {
        polling = true;
        poll();
      }
    };
    socket.onmessage = (message) => {
      const body = JSON.parse(message.data);
      if (body.type === "snapshot") (body.jobs || []).forEach(handle);
      else if (body.job && typeof body.job === "object") handle({ ...body.job, event: body.type });
      if (done) socket.close();
    };
    socket.onclose = fallBack;
    socket.onerror = fallBack;
  });
}

export function progressBar(container) {
  container.innerHTML = '<progress max="100" value="0"></progress> <span class="job-message"></span>';
  const bar = container.querySelector("progress");
  const message = container.querySelector(".job-message");
  return (data) => {
    if (typeof data.progress === "number") bar.value = data.progress;
    message.textContent = `${data.state || ""} ${data.message || ""} ${data.error || ""}`.trim();
    container.dataset.state = data.state || "";
  };
}
