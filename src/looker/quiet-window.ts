/**
 * The quiet window: the hours in which this run may stop Looker (e.g. "01:00-05:00" in the instance's time zone).
 * Outside it, a run that would stop Looker refuses unless forced, so a manual daytime run cannot take Looker down.
 */
import { InputError, LookerBackupError } from "../errors.js";

export interface QuietWindow {
  readonly startMinute: number;
  readonly endMinute: number;
  readonly timeZone: string;
  readonly text: string;
}

/** `where` names the window in errors; `timeZoneWhere` the time zone (a separate action input). */
export function parseQuietWindow(
  text: string,
  timeZone: string,
  where = "quiet-window",
  timeZoneWhere = where,
): QuietWindow {
  const match = /^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$/.exec(text);
  const minutes = match?.slice(1).map(Number);
  if (!match || !minutes || minutes[0]! > 23 || minutes[1]! > 59 || minutes[2]! > 24 || minutes[3]! > 59) {
    throw new InputError(
      `${where}: '${text}' is not a time range`,
      'write it as "HH:MM-HH:MM", e.g. "01:00-05:00"',
    );
  }
  try {
    new Intl.DateTimeFormat("en-US", { timeZone }).format(0);
  } catch {
    throw new InputError(
      `${timeZoneWhere}: unknown time zone '${timeZone}'`,
      "use an IANA name such as UTC or Europe/Berlin",
    );
  }
  return {
    startMinute: minutes[0]! * 60 + minutes[1]!,
    endMinute: minutes[2]! * 60 + minutes[3]!,
    timeZone,
    text: text.trim(),
  };
}

export function minuteOfDay(at: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone,
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return get("hour") * 60 + get("minute");
}

/** Windows may wrap midnight ("22:00-02:00"). */
export function isInsideWindow(window: QuietWindow, at: Date): boolean {
  const minute = minuteOfDay(at, window.timeZone);
  if (window.startMinute <= window.endMinute)
    return minute >= window.startMinute && minute < window.endMinute;
  return minute >= window.startMinute || minute < window.endMinute;
}

export function assertMayStopLooker(window: QuietWindow | undefined, at: Date, force: boolean): void {
  if (window === undefined || force || isInsideWindow(window, at)) return;
  throw new LookerBackupError(
    `refusing to stop Looker outside the quiet window ${window.text} (${window.timeZone}); it is ${String(Math.floor(minuteOfDay(at, window.timeZone) / 60)).padStart(2, "0")}:${String(minuteOfDay(at, window.timeZone) % 60).padStart(2, "0")} there`,
    {
      hint: "run inside the window, use consistency live, or force it (--force-outside-window / force-outside-window: true)",
    },
  );
}
