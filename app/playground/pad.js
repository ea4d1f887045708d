// A drawing pad: dark ink on light paper, as people draw. The server's image decoder finds the
// polarity, crops to the ink and re-centres it, so the PNG is sent as drawn (no resizing here).

const PAPER = "#ffffff";
const INK = "#111111";
const KEY_STEP = 12; // canvas pixels per arrow key press

export class DrawingPad {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} pen  marker of the keyboard pen's position
   * @param {() => void} onStroke  called when a stroke ends
   */
  constructor(canvas, pen, onStroke) {
    this.canvas = canvas;
    this.pen = pen;
    this.onStroke = onStroke;
    this.ctx = canvas.getContext("2d");
    this.drawn = false;
    this.last = null;
    this.keyPen = { x: canvas.width / 2, y: canvas.height / 2, down: false };
    this.clear();
    canvas.addEventListener("pointerdown", (e) => this.#down(e));
    canvas.addEventListener("pointermove", (e) => this.#move(e));
    canvas.addEventListener("pointerup", () => this.#up());
    canvas.addEventListener("pointercancel", () => this.#up());
    canvas.addEventListener("keydown", (e) => this.#key(e));
    canvas.addEventListener("blur", () => this.#lift());
  }

  clear() {
    const { ctx, canvas } = this;
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = canvas.width / 14;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    this.drawn = false;
  }

  /** @returns {Promise<Blob>} the drawing as a PNG file */
  toBlob() {
    return new Promise((resolve, reject) =>
      this.canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas gave no PNG"))), "image/png"),
    );
  }

  #point(e) {
    const r = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) * this.canvas.width) / r.width,
      y: ((e.clientY - r.top) * this.canvas.height) / r.height,
    };
  }

  #dot(p) {
    this.ctx.beginPath();
    this.ctx.arc(p.x, p.y, this.ctx.lineWidth / 2, 0, 2 * Math.PI);
    this.ctx.fill();
    this.drawn = true;
  }

  #line(a, b) {
    this.ctx.beginPath();
    this.ctx.moveTo(a.x, a.y);
    this.ctx.lineTo(b.x, b.y);
    this.ctx.stroke();
    this.drawn = true;
  }

  #down(e) {
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.last = this.#point(e);
    this.#dot(this.last);
  }

  #move(e) {
    if (!this.last) return;
    const p = this.#point(e);
    this.#line(this.last, p);
    this.last = p;
  }

  #up() {
    if (!this.last) return;
    this.last = null;
    this.onStroke();
  }

  // Keyboard drawing: arrows move the pen, Space puts it down (drawing as it moves) or lifts it.
  #key(e) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const k = this.keyPen;
    if (e.key === " ") {
      k.down = !k.down;
      if (k.down) this.#dot(k);
      else this.onStroke();
    } else if (e.key in moves) {
      const [dx, dy] = moves[e.key];
      const next = {
        x: Math.min(this.canvas.width, Math.max(0, k.x + dx * KEY_STEP)),
        y: Math.min(this.canvas.height, Math.max(0, k.y + dy * KEY_STEP)),
      };
      if (k.down) this.#line(k, next);
      k.x = next.x;
      k.y = next.y;
    } else {
      return;
    }
    e.preventDefault();
    this.#showPen();
  }

  #lift() {
    if (this.keyPen.down) {
      this.keyPen.down = false;
      this.onStroke();
    }
    this.pen.hidden = true;
  }

  #showPen() {
    const { canvas, pen, keyPen } = this;
    pen.hidden = false;
    pen.classList.toggle("down", keyPen.down);
    pen.style.left = `${(100 * keyPen.x) / canvas.width}%`;
    pen.style.top = `${(100 * keyPen.y) / canvas.height}%`;
  }
}
