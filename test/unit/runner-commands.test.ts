/** The runner stand-in's pure pieces (test/helpers/runner-commands.ts) against the runner behaviour they copy. */
import { describe, expect, it } from "vitest";
import {
  fileCommandValues,
  inputEnvironment,
  parseFileCommand,
  parseWorkflowCommand,
  REGISTERED_COMMANDS,
  SecretMasker,
  StepOutput,
} from "../helpers/runner-commands.js";
import { LineSplitter } from "../helpers/runner-job.js";

const registered = new Set<string>(REGISTERED_COMMANDS);
// biome-ignore lint/suspicious/noTemplateCurlyInString: an Actions expression, as action.yml writes it
const TOKEN_DEFAULT = "${{ github.token }}";

describe("SecretMasker", () => {
  it("replaces every occurrence, merging overlapping and touching ranges into one ***", () => {
    const masker = new SecretMasker();
    masker.add("abcd");
    masker.add("cdef");
    masker.add("xy");
    expect(masker.mask("1abcdef2 abcd xyxy end")).toBe("1***2 *** *** end");
    expect(masker.mask("nothing here")).toBe("nothing here");
  });

  it("masks a multi-line value as a whole and line by line, trimmed, as add-mask registers it", () => {
    const masker = new SecretMasker();
    masker.addWithLines("-----BEGIN KEY-----\n  line-one  \r\n\nline-two\n-----END KEY-----");
    expect(masker.mask("key: line-one")).toBe("key: ***");
    expect(masker.mask("line-two!")).toBe("***!");
    expect(masker.mask("-----BEGIN KEY-----")).toBe("***");
  });
});

describe("workflow commands", () => {
  it("parses ::name k=v::data with the runner's escapes", () => {
    expect(
      parseWorkflowCommand("  ::error file=a%2Cb.ts,title=x%3Ay::line%0Atwo %25 done", "stdout", registered),
    ).toEqual({
      command: "error",
      properties: { file: "a,b.ts", title: "x:y" },
      data: "line\ntwo % done",
      syntax: "::",
      stream: "stdout",
    });
  });

  it("parses the legacy ##[name k=v;]data form anywhere in a line", () => {
    expect(parseWorkflowCommand("prefix ##[set-output name=a%3Bb;]v%5D", "stderr", registered)).toEqual({
      command: "set-output",
      properties: { name: "a;b" },
      data: "v]",
      syntax: "##[",
      stream: "stderr",
    });
  });

  it("does not treat unregistered names as commands", () => {
    expect(parseWorkflowCommand("::not-a-command::x", "stdout", registered)).toBeUndefined();
    expect(parseWorkflowCommand("a :: b", "stdout", registered)).toBeUndefined();
  });

  it("consumes add-mask, masks later lines only, and records deprecated commands", () => {
    const masker = new SecretMasker();
    const out = new StepOutput(masker);
    out.line("before s3cr3t-value", "stdout");
    out.line("::add-mask::s3cr3t-value", "stdout");
    out.line("after s3cr3t-value", "stderr");
    out.line("::set-output name=x::1", "stdout");
    out.line("::save-state name=y::2", "stdout");
    out.line("::error::failed with s3cr3t-value", "stdout");
    out.line("::debug::hidden", "stdout");
    out.line("::group::Step", "stdout");
    expect(out.visible).toEqual([
      "before s3cr3t-value",
      "after ***",
      "##[error]failed with ***",
      "##[group]Step",
    ]);
    expect(out.commands.map((c) => c.command)).toEqual([
      "add-mask",
      "set-output",
      "save-state",
      "error",
      "debug",
      "group",
    ]);
    expect(out.commandOutputs).toEqual({ x: "1" });
    expect(out.commandState).toEqual({ y: "2" });
    expect(out.commandFailed).toBe(false);
  });

  it("stops processing commands until the stop token, and fails the step on disabled commands", () => {
    const out = new StepOutput(new SecretMasker());
    out.line("::stop-commands::pause-token-1", "stdout");
    out.line("::add-mask::not-a-mask", "stdout");
    out.line("::pause-token-1::", "stdout");
    out.line("not-a-mask", "stdout");
    expect(out.visible).toEqual(["::stop-commands::***", "::add-mask::not-a-mask", "::***::", "not-a-mask"]);
    out.line("::set-env name=A::b", "stdout");
    expect(out.commandFailed).toBe(true);
  });
});

describe("INPUT_ variables", () => {
  const manifest = {
    name: "test action",
    inputs: new Map([
      ["master-key", ""],
      ["github-token", TOKEN_DEFAULT],
      ["web port", "9999"],
      ["Mixed-Case", "d"],
    ]),
  };

  it("gives every declared input, defaults merged with with:, names upper-cased with spaces as _", () => {
    expect(
      inputEnvironment(manifest, { "master-key": "k", "mixed-case": "given" }, { "github.token": "ghs_x" }),
    ).toEqual({
      "INPUT_MASTER-KEY": "k",
      "INPUT_GITHUB-TOKEN": "ghs_x",
      INPUT_WEB_PORT: "9999",
      "INPUT_MIXED-CASE": "given",
    });
  });

  it("refuses inputs the manifest does not declare and expressions it cannot evaluate", () => {
    expect(() => inputEnvironment(manifest, { "master-kee": "k" }, { "github.token": "t" })).toThrow(
      "Unexpected input(s) 'master-kee'",
    );
    expect(() => inputEnvironment(manifest, {}, {})).toThrow(`cannot evaluate: ${TOKEN_DEFAULT}`);
  });
});

describe("file commands", () => {
  it("reads NAME=VALUE on the first = and heredocs without the last newline", () => {
    const text = "a=b=c\n\nmulti<<EOF\nline 1\nline=2\nEOF\nempty<<X\nX\na=again\n";
    expect(parseFileCommand(text)).toEqual([
      ["a", "b=c"],
      ["multi", "line 1\nline=2"],
      ["empty", ""],
      ["a", "again"],
    ]);
    expect(fileCommandValues(text)).toEqual({ a: "again", multi: "line 1\nline=2", empty: "" });
    expect(fileCommandValues("last<<E\nv\nE")).toEqual({ last: "v" });
  });

  it("rejects what the runner rejects", () => {
    expect(() => parseFileCommand("name<<EOF\nvalue\n")).toThrow("Matching delimiter not found 'EOF'");
    expect(() => parseFileCommand("name<<EOF\nvalue")).toThrow("EOF marker missing new line");
    expect(() => parseFileCommand("no separator\n")).toThrow("Invalid format 'no separator'");
    expect(() => parseFileCommand("<<EOF\nEOF\n")).toThrow("Name must not be empty");
  });
});

describe("LineSplitter", () => {
  it("splits on \\n, \\r\\n and a lone \\r, also across chunks, and keeps an unterminated last line", () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line));
    for (const chunk of ["one\r", "\ntwo\rthree\n\nfo", "ur"]) splitter.push(chunk);
    splitter.end();
    expect(lines).toEqual(["one", "two", "three", "", "four"]);
  });
});
