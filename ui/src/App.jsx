import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useStream } from "@langchain/langgraph-sdk/react";
import { Message } from "./messages.jsx";
import { ThreadList } from "./ThreadList.jsx";
import { readParams, writeParam } from "./url.js";

const ASSISTANTS = ["chat_agent", "approval_agent"];

function errorText(error) {
  if (error == null) return "";
  if (typeof error === "string") return error;
  const name = error.name && error.name !== "Error" ? `${error.name}: ` : "";
  return `${name}${error.message ?? JSON.stringify(error)}`;
}

function InterruptPrompt({ interrupt, disabled, onAnswer }) {
  const value = interrupt.value;
  const question = typeof value === "string" ? value : value?.question ?? "The agent needs your answer.";
  const call = value?.tool_call;
  return (
    <section className="interrupt" data-testid="interrupt">
      <p className="interrupt-question" data-testid="interrupt-question">
        {question}
      </p>
      {call && (
        <p className="interrupt-call">
          <code>
            {call.name}({typeof call.args === "object" ? JSON.stringify(call.args) : String(call.args)})
          </code>
        </p>
      )}
      <div className="interrupt-actions">
        <button type="button" data-testid="approve" disabled={disabled} onClick={() => onAnswer(true)}>
          Approve
        </button>
        <button type="button" data-testid="reject" disabled={disabled} onClick={() => onAnswer(false)}>
          Reject
        </button>
      </div>
    </section>
  );
}

export function App() {
  const initial = useMemo(readParams, []);
  const [threadId, setThreadIdState] = useState(initial.thread);
  const [assistantId, setAssistantIdState] = useState(initial.assistant);
  const [runId, setRunId] = useState(null);
  const [input, setInput] = useState("");
  const [refreshKey, setRefreshKey] = useState(0);
  const refreshThreads = useCallback(() => setRefreshKey((k) => k + 1), []);

  const setThreadId = useCallback((id) => {
    setThreadIdState(id);
    writeParam("thread", id);
  }, []);
  const setAssistantId = useCallback((id) => {
    setAssistantIdState(id);
    writeParam("assistant", id === "chat_agent" ? null : id);
  }, []);

  const runConfig = useMemo(() => {
    const delay = Number(initial.delay);
    return initial.delay != null && Number.isFinite(delay) ? { configurable: { delay } } : undefined;
  }, [initial.delay]);

  const stream = useStream({
    apiUrl: initial.apiUrl,
    assistantId,
    threadId,
    onThreadId: setThreadId,
    reconnectOnMount: true,
    onCreated: (run) => setRunId(run.run_id),
    onFinish: refreshThreads,
    onError: refreshThreads,
    // The list shows each thread's status: re-read it once the server has cancelled the run too.
    onStop: () => setTimeout(refreshThreads, 500),
  });

  // A new or switched thread re-reads the list (the first render already reads it).
  const shownThread = useRef(threadId);
  useEffect(() => {
    if (shownThread.current === threadId) return;
    shownThread.current = threadId;
    refreshThreads();
  }, [threadId, refreshThreads]);

  const messages = stream.messages;
  // Only interrupt() calls (they carry a value) get the approval prompt. useStream also reports
  // a bare {when: "breakpoint"} for any thread whose checkpoint has `next` nodes left, e.g. after
  // Stop; sending a new message simply continues such a thread.
  const interrupts = stream.interrupts.filter((i) => i && i.value !== undefined);
  const interrupt = interrupts.length ? interrupts[0] : undefined;
  const busy = stream.isLoading;

  const listEnd = useRef(null);
  useEffect(() => {
    listEnd.current?.scrollIntoView?.({ block: "end" });
  }, [messages]);

  const send = (event) => {
    event.preventDefault();
    const text = input.trim();
    if (!text || busy || interrupt != null) return;
    setInput("");
    setRunId(null);
    stream.submit(
      { messages: [{ type: "human", content: text }] },
      {
        config: runConfig,
        optimisticValues: (prev) => ({
          ...prev,
          messages: [...(prev.messages ?? []), { type: "human", content: text, id: `optimistic-${Date.now()}` }],
        }),
      },
    );
  };

  const answer = (approved) => {
    setRunId(null);
    stream.submit(undefined, { command: { resume: approved }, config: runConfig });
  };

  const selectThread = (thread) => {
    if (busy) stream.stop();
    const graph = thread.metadata?.graph_id;
    if (graph) setAssistantId(graph);
    setRunId(null);
    setThreadId(thread.thread_id);
  };

  const newThread = () => {
    if (busy) stream.stop();
    setRunId(null);
    setThreadId(null);
  };

  const assistants = ASSISTANTS.includes(assistantId) ? ASSISTANTS : [...ASSISTANTS, assistantId];
  const error = stream.error;

  return (
    <div className="app">
      <ThreadList
        client={stream.client}
        currentId={threadId}
        refreshKey={refreshKey}
        onSelect={selectThread}
        onNew={newThread}
      />
      <main className="chat">
        <header className="chat-head">
          <h1>Gateway chat</h1>
          <label>
            Assistant{" "}
            <select
              data-testid="assistant"
              value={assistantId}
              disabled={busy}
              onChange={(e) => {
                setAssistantId(e.target.value);
                newThread();
              }}
            >
              {assistants.map((a) => (
                <option key={a} value={a}>
                  {a}
                </option>
              ))}
            </select>
          </label>
          <span className="status" data-testid="status" data-loading={busy ? "true" : "false"}>
            {busy ? "running…" : "idle"}
          </span>
        </header>
        <p className="chat-ids">
          thread <code data-testid="thread-id">{threadId ?? "(none yet)"}</code>
          {runId && (
            <>
              {" · run "}
              <code data-testid="run-id">{runId}</code>
            </>
          )}
        </p>

        <ol className="messages" data-testid="messages">
          {messages.map((m, i) => (
            <Message key={m.id ?? i} message={m} />
          ))}
          <li ref={listEnd} className="messages-end" aria-hidden="true" />
        </ol>

        {interrupt && !busy && <InterruptPrompt interrupt={interrupt} disabled={busy} onAnswer={answer} />}

        {error != null && (
          <p className="error" role="alert" data-testid="error">
            {errorText(error)}
          </p>
        )}

        <form className="composer" onSubmit={send}>
          <input
            data-testid="input"
            value={input}
            placeholder={interrupt && !busy ? "Answer the prompt above first…" : "Ask something, e.g. what is 12*(3+4)?"}
            onChange={(e) => setInput(e.target.value)}
            autoFocus
          />
          <button type="submit" data-testid="send" disabled={busy || (interrupt != null) || input.trim() === ""}>
            Send
          </button>
          <button type="button" data-testid="stop" disabled={!busy} onClick={() => stream.stop()}>
            Stop
          </button>
        </form>
        <footer className="chat-foot">
          gateway <code>{initial.apiUrl}</code>
        </footer>
      </main>
    </div>
  );
}
