import { useEffect, useState } from "react";
import { textOf } from "./messages.jsx";

function title(thread) {
  const messages = thread.values?.messages;
  const first = Array.isArray(messages) ? messages.find((m) => m?.type === "human") : undefined;
  const text = first ? textOf(first.content).trim() : "";
  return text || "(new thread)";
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
}

// The gateway's threads, newest first (POST /threads/search); click one to open it.
export function ThreadList({ client, currentId, refreshKey, onSelect, onNew }) {
  const [threads, setThreads] = useState([]);
  const [error, setError] = useState(null);

  useEffect(() => {
    let cancelled = false;
    client.threads
      .search({ limit: 30, sortBy: "created_at", sortOrder: "desc" })
      .then(
        (found) => {
          if (cancelled) return;
          setThreads(found);
          setError(null);
        },
        (err) => {
          if (!cancelled) setError(err);
        },
      );
    return () => {
      cancelled = true;
    };
  }, [client, refreshKey]);

  return (
    <nav className="threads" data-testid="thread-list">
      <div className="threads-head">
        <h2>Threads</h2>
        <button type="button" data-testid="new-thread" onClick={onNew}>
          New
        </button>
      </div>
      {error && (
        <p className="threads-error" data-testid="thread-list-error">
          Could not list threads: {String(error.message ?? error)}
        </p>
      )}
      <ul>
        {threads.map((thread) => (
          <li key={thread.thread_id}>
            <button
              type="button"
              className={thread.thread_id === currentId ? "thread current" : "thread"}
              data-testid="thread-item"
              data-thread-id={thread.thread_id}
              data-status={thread.status}
              aria-current={thread.thread_id === currentId ? "true" : undefined}
              onClick={() => onSelect(thread)}
            >
              <span className="thread-title">{title(thread)}</span>
              <span className="thread-meta">
                {thread.metadata?.graph_id ?? ""} · {thread.status} · {when(thread.created_at)}
              </span>
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}
