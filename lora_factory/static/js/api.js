// The REST client: one place that turns the API's error body into an ApiError (code, message,
// message_ja, detail), parses server-sent events from a POST (EventSource cannot POST), and
// follows a job through GET /api/jobs/{id}/events.

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || err.message_ja || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || `HTTP_${status}`;
    this.message_ja = err.message_ja || err.message || `HTTPエラー ${status}`;
    this.detail = err.detail ?? null;
    if (!err.code && body && body.detail) {
      // FastAPI's own validation errors (422 {"detail": [...]}) before our handler sees them:
      // kept as per-field errors, which showError turns into sentences naming each field.
      const items = Array.isArray(body.detail) ? body.detail : [body.detail];
      const errors = items.map((d) => (typeof d === "string" ? { field: null, reason: d } : { field: (d.loc || []).filter((p) => p !== "body").join("."), reason: d.msg }));
      this.code = "VALIDATION_ERROR";
      this.message = "Some fields are not filled in correctly.";
      this.message_ja = "入力内容に誤りがあります。";
      this.detail = { errors };
    }
  }
}

async function parseBody(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: `HTTP_${res.status}`, message: text.slice(0, 300), message_ja: text.slice(0, 300) } };
  }
}

/** JSON request. body: object (sent as JSON) or FormData (multipart). */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, {
      error: {
        code: "SERVER_UNREACHABLE",
        message: `The LoRA Factory server does not answer (${err.message}). Is it still running?`,
        message_ja: `LoRA Factory のサーバーに接続できません(${err.message})。サーバーが起動しているか確認してください。`,
      },
    });
  }
  const data = await parseBody(res);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body ?? {});
export const del = (path, body) => api("DELETE", path, body ?? { confirm: true });

/**
 * Parse a text/event-stream body incrementally. Calls onEvent(eventName, data) for every event;
 * data is JSON-decoded when possible. Handles chunks split anywhere, CRLF, and multi-line data.
 */
export async function readSSE(response, onEvent, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let eventName = "message";
  let dataLines = [];
  const dispatch = () => {
    if (dataLines.length) {
      const raw = dataLines.join("\n");
      let data = raw;
      try {
        data = JSON.parse(raw);
      } catch {
        // plain text data
      }
      onEvent(eventName, data);
    }
    eventName = "message";
    dataLines = [];
  };
  for (;;) {
    if (signal && signal.aborted) {
      reader.cancel();
      break;
    }
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let idx;
    while ((idx = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, idx);
      buffer = buffer.slice(buffer[idx] === "\r" ? idx + 2 : idx + 1);
      if (line === "") dispatch();
      else if (line.startsWith(":")) continue;
      else {
        const colon = line.indexOf(":");
        const fieldName = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (fieldName === "event") eventName = val;
        else if (fieldName === "data") dataLines.push(val);
      }
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) {
    for (const line of buffer.split(/\r?\n/)) {
      if (line.startsWith("data:")) dataLines.push(line.slice(5).trimStart());
      else if (line.startsWith("event:")) eventName = line.slice(6).trim();
    }
  }
  dispatch();
}

/** POST a JSON body and stream its server-sent events (chat tokens). */
export async function postSSE(path, body, onEvent, signal) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") return;
    throw new ApiError(0, {
      error: { code: "SERVER_UNREACHABLE", message: err.message, message_ja: `サーバーに接続できません: ${err.message}` },
    });
  }
  if (!res.ok) throw new ApiError(res.status, await parseBody(res));
  const type = res.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) {
    // A server that answered JSON anyway: treat it as one final event.
    const data = await parseBody(res);
    onEvent("done", data);
    return;
  }
  await readSSE(res, onEvent, signal);
}

export const TERMINAL = new Set(["completed", "failed", "canceled", "interrupted"]);

/**
 * Follow a job live. handlers: onProgress(record), onLog(line), onStatus(job), onEnd(job).
 * Uses EventSource on /api/jobs/{id}/events; if the stream breaks before the end, falls back to
 * polling GET /api/jobs/{id} so the view never freezes. Returns a stop() function.
 */
export function watchJob(jobId, handlers) {
  let stopped = false;
  let ended = false;
  let source = null;
  let pollTimer = null;
  let lastStatus = null;

  const finish = (job) => {
    if (ended) return;
    ended = true;
    stop();
    handlers.onEnd && handlers.onEnd(job);
  };
  const onStatus = (job) => {
    lastStatus = job;
    handlers.onStatus && handlers.onStatus(job);
    if (job && TERMINAL.has(job.status)) finish(job);
  };
  const poll = async () => {
    if (stopped) return;
    try {
      const job = await get(`/api/jobs/${encodeURIComponent(jobId)}`);
      if (job.max_steps || job.step) handlers.onProgress && handlers.onProgress({ ...(job.metrics || {}), step: job.step, max_steps: job.max_steps, loss: job.loss, eta: job.eta });
      onStatus(job);
    } catch {
      // keep trying: a restarting server comes back
    }
    if (!stopped) pollTimer = setTimeout(poll, 1000);
  };
  const parse = (ev) => {
    try {
      return JSON.parse(ev.data);
    } catch {
      return ev.data;
    }
  };

  function stop() {
    stopped = true;
    if (source) source.close();
    if (pollTimer) clearTimeout(pollTimer);
  }

  if (typeof EventSource === "undefined") {
    poll();
  } else {
    source = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
    source.addEventListener("progress", (ev) => handlers.onProgress && handlers.onProgress(parse(ev)));
    source.addEventListener("sample", (ev) => handlers.onSample && handlers.onSample(parse(ev)));
    source.addEventListener("log", (ev) => {
      const data = parse(ev);
      handlers.onLog && handlers.onLog(typeof data === "string" ? data : data.line);
    });
    source.addEventListener("status", (ev) => onStatus(parse(ev)));
    source.addEventListener("error", () => {
      // The server closes the stream after the terminal status; any other break -> poll.
      if (stopped || ended) return;
      source.close();
      if (lastStatus && TERMINAL.has(lastStatus.status)) finish(lastStatus);
      else poll();
    });
  }
  return stop;
}

/** Resolve with the job once it reaches a terminal status (reject with its error if it failed). */
export function waitJob(jobId, onProgress) {
  return new Promise((resolve, reject) => {
    watchJob(jobId, {
      onProgress,
      onEnd: (job) => {
        if (job.status === "completed") resolve(job);
        else {
          const err = job.error || {};
          reject(
            new ApiError(500, {
              error: {
                code: err.code || `JOB_${String(job.status).toUpperCase()}`,
                message: err.message || `The job ${jobId} ended as ${job.status}.`,
                message_ja: err.message_ja || `ジョブ ${jobId} は「${job.status}」で終了しました。`,
                detail: { job_id: jobId },
              },
            }),
          );
        }
      },
    });
  });
}
