/** A minimal typed event emitter. */
export class Emitter<Events extends object> {
  private listeners: { [K in keyof Events]?: Array<(payload: Events[K]) => void> } = {};

  on<K extends keyof Events>(name: K, fn: (payload: Events[K]) => void): () => void {
    const list = (this.listeners[name] ??= []);
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  emit<K extends keyof Events>(name: K, payload: Events[K]): void {
    for (const fn of [...(this.listeners[name] ?? [])]) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`listener for ${String(name)} failed`, err);
      }
    }
  }
}
