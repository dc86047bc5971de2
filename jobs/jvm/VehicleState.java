package jobs.jvm;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * What the per-vehicle stage remembers of one vehicle (see jobs/stages/vehicle/stage.py):
 *
 * <ul>
 *   <li>the last few boots with their highest seq_num and a 512-bit window of the seq_num values
 *       seen (a late event is accepted once; the same one again is a replay);
 *   <li>the last 8 trusted fixes, so an event that arrives out of order is compared with its
 *       neighbours in event time, not with whatever came last;
 *   <li>the recent time steps of the current boot (the vehicle's own cadence) and stuck-sensor
 *       timers.
 * </ul>
 *
 * <p>Kept in the state store as a few hundred bytes ({@link #write}); {@link #describe} shows it.
 */
public final class VehicleState {
  static final int SEQ_WINDOW = 512;
  private static final int KEEP_FIXES = 8;
  private static final int KEEP_STEPS = 6;
  private static final int KEEP_BOOTS = 4;
  private static final byte FORMAT = 1;

  /** A trusted event's position, speed and odometer (either may be missing). */
  static final class Fix {
    final double t;
    final Double lat;
    final Double lon;
    final Double speed;
    final Double odometer;
    final String boot;
    final Long seq;

    Fix(double t, Double lat, Double lon, Double speed, Double odometer, String boot, Long seq) {
      this.t = t;
      this.lat = lat;
      this.lon = lon;
      this.speed = speed;
      this.odometer = odometer;
      this.boot = boot;
      this.seq = seq;
    }
  }

  /** A boot: its highest seq_num, the window of seq_nums seen below it, its last event time. */
  private static final class Boot {
    long top;
    final long[] bits = new long[SEQ_WINDOW / 64];
    double lastT;

    boolean has(long behind) {
      return behind < SEQ_WINDOW && (bits[(int) (behind >>> 6)] >>> (behind & 63) & 1) == 1;
    }

    void set(long behind) {
      if (behind < SEQ_WINDOW) {  // older than the window: never read again
        bits[(int) (behind >>> 6)] |= 1L << (behind & 63);
      }
    }

    /** The window moved up by {@code by}: what was {@code i} behind is now {@code i + by}. */
    void shift(long by) {
      if (by >= SEQ_WINDOW) {
        Arrays.fill(bits, 0);
        return;
      }
      int words = (int) (by >>> 6);
      int within = (int) (by & 63);
      for (int i = bits.length - 1; i >= 0; i--) {
        int from = i - words;
        long word = from >= 0 ? bits[from] << within : 0;
        if (within != 0 && from - 1 >= 0) {
          word |= bits[from - 1] >>> (64 - within);
        }
        bits[i] = word;
      }
    }
  }

  private final Map<String, Boot> boots = new LinkedHashMap<>();
  List<Fix> fixes = new ArrayList<>();
  final List<Double> steps = new ArrayList<>();
  boolean hasLast;
  String lastBoot;
  double lastT;
  Long lastSeq;
  final Map<String, double[]> stuck = new LinkedHashMap<>();  // field -> (value, since)

  // -- what the rules read

  /** Why (boot, seq) is a replay, or null. */
  String seen(String boot, long seq) {
    Boot known = boots.get(boot);
    if (known == null) {
      return null;
    }
    if (seq <= known.top - SEQ_WINDOW) {
      return "seq_num " + seq + " is " + (known.top - seq) + " behind " + known.top
          + " in boot " + boot;
    }
    if (seq <= known.top && known.has(known.top - seq)) {
      return "seq_num " + seq + " of boot " + boot + " was seen before";
    }
    return null;
  }

  /**
   * The trusted fixes just before and after an event. Within its boot the order is the vehicle's
   * own seq_num (a wrong clock cannot reorder it); across boots, event time.
   */
  Fix[] neighbours(double t, String boot, Long seq) {
    List<Fix> same = new ArrayList<>();
    for (Fix f : fixes) {
      if (boot != null && boot.equals(f.boot) && f.seq != null) {
        same.add(f);
      }
    }
    if (seq != null && !same.isEmpty()) {
      Fix before = null;
      Fix after = null;
      for (Fix f : same) {
        if (f.seq < seq && (before == null || f.seq > before.seq)) {
          before = f;
        }
        if (f.seq > seq && (after == null || f.seq < after.seq)) {
          after = f;
        }
      }
      if (before != null) {
        return new Fix[] {before, after};
      }
      Fix other = null;
      for (Fix f : fixes) {
        if (!Objects.equals(f.boot, boot) && f.t <= t) {
          other = f;
        }
      }
      return new Fix[] {other, after};
    }
    Fix before = null;
    for (Fix f : fixes) {
      if (f.t <= t) {
        before = f;
      }
    }
    return new Fix[] {before, null};
  }

  /** The positioned fix learned just before {@code fix}. */
  Fix before(Fix fix) {
    Fix found = null;
    for (Fix f : fixes) {
      if (f != fix && f.t <= fix.t && f.lat != null) {
        found = f;
      }
    }
    return found;
  }

  void forget(Fix fix) {
    fixes.removeIf(f -> f == fix);
  }

  // -- learning from a trusted event

  void learn(String boot, Long seq, double t, Fix fix) {
    if (boot != null && seq != null) {
      Boot b = boots.get(boot);
      if (b == null) {
        b = new Boot();
        b.top = seq;
        b.lastT = t;
      }
      if (seq > b.top) {
        b.shift(seq - b.top);
        b.top = seq;
      }
      b.set(b.top - seq);
      b.lastT = Math.max(b.lastT, t);
      boots.put(boot, b);
      if (boots.size() > KEEP_BOOTS) {
        String oldest = null;
        for (Map.Entry<String, Boot> e : boots.entrySet()) {
          if (oldest == null || e.getValue().lastT < boots.get(oldest).lastT) {
            oldest = e.getKey();
          }
        }
        boots.remove(oldest);
      }
    }
    if (hasLast && Objects.equals(lastBoot, boot)) {
      if (t >= lastT) {
        if (seq != null && seq == (lastSeq == null ? 0 : lastSeq) + 1) {
          steps.add(t - lastT);
          if (steps.size() > KEEP_STEPS) {
            steps.remove(0);
          }
        }
        lastBoot = boot;
        lastT = t;
        lastSeq = seq;
      }
    } else {  // a new boot: the vehicle's cadence (steps) carries over
      hasLast = true;
      lastBoot = boot;
      lastT = t;
      lastSeq = seq;
    }
    if (fix != null) {
      fixes.add(fix);
      fixes.sort(Comparator.comparingDouble(f -> f.t));  // stable: the new one last among equals
      if (fixes.size() > KEEP_FIXES) {
        fixes = new ArrayList<>(fixes.subList(fixes.size() - KEEP_FIXES, fixes.size()));
      }
    }
  }

  // -- as kept in the state store

  /** The state from its bytes ({@link #write}); empty for null. */
  public static VehicleState read(byte[] bytes) {
    VehicleState s = new VehicleState();
    if (bytes == null) {
      return s;
    }
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes))) {
      if (in.readByte() != FORMAT) {
        throw new IllegalStateException("per-vehicle state of an unknown format");
      }
      for (int n = in.readInt(), i = 0; i < n; i++) {
        String boot = in.readUTF();
        Boot b = new Boot();
        b.top = in.readLong();
        for (int k = 0; k < b.bits.length; k++) {
          b.bits[k] = in.readLong();
        }
        b.lastT = in.readDouble();
        s.boots.put(boot, b);
      }
      for (int n = in.readInt(), i = 0; i < n; i++) {
        s.fixes.add(new Fix(in.readDouble(), readDouble(in), readDouble(in), readDouble(in),
            readDouble(in), readString(in), readLong(in)));
      }
      for (int n = in.readInt(), i = 0; i < n; i++) {
        s.steps.add(in.readDouble());
      }
      s.hasLast = in.readBoolean();
      s.lastBoot = readString(in);
      s.lastT = in.readDouble();
      s.lastSeq = readLong(in);
      for (int n = in.readInt(), i = 0; i < n; i++) {
        s.stuck.put(in.readUTF(), new double[] {in.readDouble(), in.readDouble()});
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return s;
  }

  /** The state as the state store keeps it. */
  public byte[] write() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(512);
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeByte(FORMAT);
      out.writeInt(boots.size());
      for (Map.Entry<String, Boot> e : boots.entrySet()) {
        out.writeUTF(e.getKey());
        out.writeLong(e.getValue().top);
        for (long word : e.getValue().bits) {
          out.writeLong(word);
        }
        out.writeDouble(e.getValue().lastT);
      }
      out.writeInt(fixes.size());
      for (Fix f : fixes) {
        out.writeDouble(f.t);
        writeDouble(out, f.lat);
        writeDouble(out, f.lon);
        writeDouble(out, f.speed);
        writeDouble(out, f.odometer);
        writeString(out, f.boot);
        writeLong(out, f.seq);
      }
      out.writeInt(steps.size());
      for (double step : steps) {
        out.writeDouble(step);
      }
      out.writeBoolean(hasLast);
      writeString(out, lastBoot);
      out.writeDouble(lastT);
      writeLong(out, lastSeq);
      out.writeInt(stuck.size());
      for (Map.Entry<String, double[]> e : stuck.entrySet()) {
        out.writeUTF(e.getKey());
        out.writeDouble(e.getValue()[0]);
        out.writeDouble(e.getValue()[1]);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
  }

  /** The state as a map for people and tests: boots, fixes, steps, last, stuck. */
  public static Map<String, Object> describe(byte[] bytes) {
    VehicleState s = read(bytes);
    Map<String, Object> boots = new LinkedHashMap<>();
    s.boots.forEach((boot, b) -> boots.put(boot, List.of(b.top, b.lastT)));
    List<Object> fixes = new ArrayList<>();
    for (Fix f : s.fixes) {
      fixes.add(Arrays.asList(f.t, f.lat, f.lon, f.speed, f.odometer, f.boot, f.seq));
    }
    Map<String, Object> stuck = new LinkedHashMap<>();
    s.stuck.forEach((field, held) -> stuck.put(field, List.of(held[0], held[1])));
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("boots", boots);
    out.put("fixes", fixes);
    out.put("steps", new ArrayList<>(s.steps));
    out.put("last", s.hasLast ? Arrays.asList(s.lastBoot, s.lastT, s.lastSeq) : null);
    out.put("stuck", stuck);
    return out;
  }

  private static Double readDouble(DataInputStream in) throws IOException {
    return in.readBoolean() ? in.readDouble() : null;
  }

  private static void writeDouble(DataOutputStream out, Double value) throws IOException {
    out.writeBoolean(value != null);
    if (value != null) {
      out.writeDouble(value);
    }
  }

  private static Long readLong(DataInputStream in) throws IOException {
    return in.readBoolean() ? in.readLong() : null;
  }

  private static void writeLong(DataOutputStream out, Long value) throws IOException {
    out.writeBoolean(value != null);
    if (value != null) {
      out.writeLong(value);
    }
  }

  private static String readString(DataInputStream in) throws IOException {
    return in.readBoolean() ? in.readUTF() : null;
  }

  private static void writeString(DataOutputStream out, String value) throws IOException {
    out.writeBoolean(value != null);
    if (value != null) {
      out.writeUTF(value);
    }
  }
}
