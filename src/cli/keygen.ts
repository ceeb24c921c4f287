/** `looker-backup keygen`: a new age identity, or an ed25519 signing key. */
import { open } from "node:fs/promises";
import { resolve } from "node:path";
import { formatIdentityFile, generateHybridIdentity, generateIdentity } from "../crypto/age-keys.js";
import { fingerprint, generateSigningKey, publicKeyLine, SIGNATURE_NAMESPACE } from "../crypto/ssh-keys.js";
import { ExitCode, InputError } from "../errors.js";
import { type ParsedOptions, requireString } from "./args.js";
import type { Command, CommandContext } from "./command.js";
import { json } from "./common-options.js";

export const keygenCommand: Command = {
  spec: {
    name: "keygen",
    summary:
      "Create an age identity file (mode 0600) and print its recipient (--pq: post-quantum); with --signing, an ed25519 signing key instead.",
    usage: "looker-backup keygen --output FILE [--pq | --signing]",
    options: {
      output: {
        type: "string",
        short: "o",
        placeholder: "FILE",
        help: "where to write the identity or signing key (must not exist)",
      },
      pq: {
        type: "boolean",
        help: "make a post-quantum identity (AGE-SECRET-KEY-PQ-1..., recipient age1pq1...); decrypting needs age 1.3 or newer with stock tools",
      },
      signing: {
        type: "boolean",
        help: "make an ed25519 signing key (OpenSSH format) for --signing-key; prints its public key and allowed_signers line",
      },
      json,
    },
  },
  async run(values, context) {
    const output = resolve(requireString(values, "output", "keygen"));
    if (values.signing && values.pq) {
      throw new InputError(
        "keygen: --pq and --signing cannot be combined",
        "--pq makes an age identity, --signing an ed25519 key",
      );
    }
    if (values.signing) return signingKeygen(output, values, context);
    const generated = values.pq ? generateHybridIdentity() : generateIdentity();
    await writeNewKeyFile(output, formatIdentityFile(generated));
    if (values.json)
      context.stdout(`${JSON.stringify({ identityFile: output, recipient: generated.recipient })}\n`);
    else {
      context.stderr(`identity written to ${output}; keep it offline, it decrypts every backup made for:\n`);
      context.stdout(`${generated.recipient}\n`);
    }
    return ExitCode.Ok;
  },
};

async function signingKeygen(
  output: string,
  values: ParsedOptions,
  context: CommandContext,
): Promise<ExitCode> {
  const { key, file } = generateSigningKey(SIGNATURE_NAMESPACE);
  await writeNewKeyFile(output, file);
  const publicKey = publicKeyLine(key.publicKey, key.comment);
  // The principal is what `ssh-keygen -Y verify -I looker-backup` names; namespaces= keeps the key to backups.
  const allowedSigners = `${SIGNATURE_NAMESPACE} namespaces="${SIGNATURE_NAMESPACE}" ${publicKey}`;
  if (values.json) {
    context.stdout(
      `${JSON.stringify({ signingKeyFile: output, publicKey, allowedSigners, fingerprint: fingerprint(key.publicKey) })}\n`,
    );
  } else {
    context.stderr(
      `signing key written to ${output}; give it to the backup side only (signing-key / --signing-key). Its public key, and the allowed_signers line that trusts it (trusted-signers / --trusted-signers):\n`,
    );
    context.stdout(`${publicKey}\n${allowedSigners}\n`);
  }
  return ExitCode.Ok;
}

/** 0600, and never over an existing file: a key overwritten is every backup made with it lost or unprovable. */
async function writeNewKeyFile(output: string, content: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(output, "wx", 0o600);
  } catch (error) {
    throw new InputError(
      `cannot create ${output}: ${(error as Error).message}`,
      "choose a new file name; keygen never overwrites a key",
    );
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
}
