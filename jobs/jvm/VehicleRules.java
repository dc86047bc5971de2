package jobs.jvm;

import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.Serializable;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import jobs.jvm.VehicleState.Fix;

/**
 * The per-vehicle rules: what one vehicle's events in a micro-batch break, given what its state
 * remembers, and what the state learns from them (see jobs/stages/vehicle/stage.py).
 *
 * <p>A vehicle's events are put in order first: boots by time, then seq_num within a boot (the
 * vehicle's own counter, which a wrong clock cannot reorder). Only trusted events are checked; an
 * event that fails a rule (a stuck-sensor warning excepted) teaches nothing. Observed values are
 * written as Python's format() writes them, so a reason reads the same wherever it was made.
 */
public final class VehicleRules implements Serializable {
  private static final long serialVersionUID = 1L;
  // NaN and Infinity read as numbers, as Spark's from_json reads them
  private static final ObjectMapper JSON =
      JsonMapper.builder().enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build();
  // the rules, in the order of the configuration's "rules"
  static final int SEQ_REPLAY = 0;
  static final int CLOCK_OFFSET = 1;
  static final int ODOMETER = 2;
  static final int POSITION_JUMP = 3;
  static final int SPEED_DISTANCE = 4;
  static final int SENSOR_STUCK = 5;

  private final String[][] rules;  // (name, column, on_failure) per rule
  private final String chassis;
  private final Map<String, Integer> fields = new HashMap<>();  // name -> position in values
  private final int lat;
  private final int lon;
  private final int speed;
  private final int odometer;
  private final double odometerTolerance;
  private final double maxSpeed;
  private final double speedTolerance;
  private final double speedToleranceRatio;
  private final double speedChange;
  private final double maxFixGap;
  private final double[] clockOffsets;
  private final double clockTolerance;
  private final double maxClockAhead;
  private final String[] stuckFields;
  private final int[] stuck;  // the stuck fields' positions in values
  private final double stuckAfter;
  private final double stuckMinSpeed;

  /** One event as the rules read it; {@code values} follow the configuration's "fields". */
  record Event(String type, String boot, Long seq, double time, double enqueued,
      String partition, long position, boolean trusted, Double[] values) {}

  /** A rule broken, with what was observed. */
  private record Found(int rule, String observed) {}

  /** The configuration as JSON (jobs/stages/vehicle/stage.py writes it). */
  public VehicleRules(String config) {
    JsonNode c = read(config);
    JsonNode given = c.get("rules");
    rules = new String[given.size()][];
    for (int i = 0; i < rules.length; i++) {
      JsonNode r = given.get(i);
      rules[i] = new String[] {r.get(0).asText(), r.get(1).asText(), r.get(2).asText()};
    }
    chassis = c.get("chassis").asText();
    String[] names = strings(c.get("fields"));
    for (int i = 0; i < names.length; i++) {
      fields.put(names[i], i);
    }
    lat = fields.get("lat");
    lon = fields.get("lon");
    speed = fields.get("speed_mps");
    odometer = fields.get("odometer_m");
    odometerTolerance = c.get("odometer_tolerance_m").asDouble();
    maxSpeed = c.get("max_speed_mps").asDouble();
    speedTolerance = c.get("speed_tolerance_mps").asDouble();
    speedToleranceRatio = c.get("speed_tolerance_ratio").asDouble();
    speedChange = c.get("speed_change_mps2").asDouble();
    maxFixGap = c.get("max_fix_gap_s").asDouble();
    clockOffsets = new double[c.get("clock_offsets_s").size()];
    Arrays.setAll(clockOffsets, i -> c.get("clock_offsets_s").get(i).asDouble());
    clockTolerance = c.get("clock_tolerance_s").asDouble();
    maxClockAhead = c.get("max_clock_ahead_s").asDouble();
    stuckFields = strings(c.get("stuck_fields"));
    stuck = Arrays.stream(stuckFields).mapToInt(fields::get).toArray();
    stuckAfter = c.get("stuck_after_s").asDouble();
    stuckMinSpeed = c.get("stuck_min_speed_mps").asDouble();
  }

  /** Failures per event of one vehicle (in input order, each (rule, column, observed,
   * on_failure)); updates {@code state}. */
  List<List<String[]>> check(List<Event> events, VehicleState state) {
    List<List<String[]>> out = new ArrayList<>();
    for (int i = 0; i < events.size(); i++) {
      out.add(new ArrayList<>());
    }
    for (int i : order(events)) {
      Event e = events.get(i);
      if (!e.trusted() || Double.isNaN(e.time())) {
        continue;
      }
      List<Found> found = rules(e, state);
      boolean[] broken = new boolean[rules.length];
      for (Found f : found) {
        broken[f.rule()] = true;
        String[] rule = rules[f.rule()];
        if (!rule[2].equals("off")) {
          out.get(i).add(new String[] {rule[0], rule[1], f.observed(), rule[2]});
        }
      }
      if (broken[SEQ_REPLAY] || broken[CLOCK_OFFSET]) {
        continue;  // a replayed event, or one whose time is wrong, teaches nothing
      }
      stuckLearn(e, state);
      boolean movedWrong = broken[ODOMETER] || broken[POSITION_JUMP] || broken[SPEED_DISTANCE];
      state.learn(e.boot(), e.seq(), e.time(), movedWrong ? null : fix(e));
    }
    return out;
  }

  /**
   * {@link #check} as JSON, for tests and benchmarks: {@code events} a list of objects with the
   * fields of {@link Event} ("values" by field name, times null for none); returns the failures
   * per event and the state's bytes.
   */
  public Object[] checkJson(String events, byte[] state) {
    List<Event> parsed = new ArrayList<>();
    for (JsonNode e : read(events)) {
      Double[] values = new Double[fields.size()];
      JsonNode given = e.get("values");
      fields.forEach((name, i) -> values[i] = given == null ? null : number(given.get(name)));
      Double time = number(e.get("time"));
      Double enqueued = number(e.get("enqueued"));
      parsed.add(new Event(text(e.get("type")), text(e.get("boot")),
          e.hasNonNull("seq") ? e.get("seq").asLong() : null,
          time == null ? Double.NaN : time, enqueued == null ? Double.NaN : enqueued,
          text(e.get("partition")), e.get("position").asLong(), e.get("trusted").asBoolean(),
          values));
    }
    VehicleState s = VehicleState.read(state);
    List<List<String[]>> failures = check(parsed, s);
    List<List<Map<String, String>>> listed = new ArrayList<>();
    for (List<String[]> row : failures) {
      List<Map<String, String>> maps = new ArrayList<>();
      for (String[] f : row) {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("rule", f[0]);
        m.put("column", f[1]);
        m.put("observed", f[2]);
        m.put("on_failure", f[3]);
        maps.add(m);
      }
      listed.add(maps);
    }
    try {
      return new Object[] {JSON.writeValueAsString(listed), s.write()};
    } catch (java.io.IOException error) {
      throw new IllegalStateException(error);
    }
  }

  /** {@link VehicleState#describe} as JSON. */
  public static String describe(byte[] state) {
    try {
      return JSON.writeValueAsString(VehicleState.describe(state));
    } catch (java.io.IOException error) {
      throw new IllegalStateException(error);
    }
  }

  // -- the order of a vehicle's events

  private static Integer[] order(List<Event> events) {
    // A boot's place in time: the median of its trusted events, so one event with its clock
    // reset to 1970 cannot move the whole boot.
    Map<String, List<Double>> trusted = new HashMap<>();
    Map<String, List<Double>> all = new HashMap<>();
    for (Event e : events) {
      if (!Double.isNaN(e.time())) {
        String boot = Objects.requireNonNullElse(e.boot(), "");
        all.computeIfAbsent(boot, b -> new ArrayList<>()).add(e.time());
        if (e.trusted()) {
          trusted.computeIfAbsent(boot, b -> new ArrayList<>()).add(e.time());
        }
      }
    }
    Map<String, Double> place = new HashMap<>();
    all.forEach((boot, times) -> place.put(boot, median(trusted.getOrDefault(boot, times))));
    Integer[] order = new Integer[events.size()];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    Arrays.sort(order, (i, j) -> {  // stable: ties keep input order
      Event a = events.get(i);
      Event b = events.get(j);
      String boot = Objects.requireNonNullElse(a.boot(), "");
      String other = Objects.requireNonNullElse(b.boot(), "");
      int c = compare(place.getOrDefault(boot, Double.POSITIVE_INFINITY),
          place.getOrDefault(other, Double.POSITIVE_INFINITY));
      if (c == 0) {
        c = compareCodePoints(boot, other);
      }
      if (c == 0) {
        c = Long.compare(a.seq() == null ? -1 : a.seq(), b.seq() == null ? -1 : b.seq());
      }
      if (c == 0) {
        c = compare(a.enqueued(), b.enqueued());
      }
      if (c == 0) {
        c = compareCodePoints(String.valueOf(a.partition()), String.valueOf(b.partition()));
      }
      return c != 0 ? c : Long.compare(a.position(), b.position());
    });
    return order;
  }

  private static double median(List<Double> values) {
    double[] sorted = values.stream().mapToDouble(Double::doubleValue).sorted().toArray();
    int n = sorted.length;
    return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }

  /** Doubles compared as Python compares floats (-0.0 equals 0.0). */
  private static int compare(double a, double b) {
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /** Strings compared as Python compares them: by code point. */
  private static int compareCodePoints(String a, String b) {
    int i = 0;
    int j = 0;
    while (i < a.length() && j < b.length()) {
      int x = a.codePointAt(i);
      int y = b.codePointAt(j);
      if (x != y) {
        return Integer.compare(x, y);
      }
      i += Character.charCount(x);
      j += Character.charCount(y);
    }
    return Boolean.compare(i < a.length(), j < b.length());
  }

  // -- the rules

  /** The number of payload fields an event's values hold. */
  int fieldCount() {
    return fields.size();
  }

  private Fix fix(Event e) {
    Double y = e.values()[lat];
    Double x = e.values()[lon];
    boolean positioned = y != null && x != null && !(y == 0 && x == 0);
    boolean isChassis = chassis.equals(e.type());
    Double moving = isChassis ? e.values()[speed] : null;
    Double reading = isChassis ? e.values()[odometer] : null;
    if (!positioned && reading == null) {
      return null;
    }
    return new Fix(e.time(), positioned ? y : null, positioned ? x : null, moving, reading,
        e.boot(), e.seq());
  }

  private List<Found> rules(Event e, VehicleState state) {
    List<Found> found = new ArrayList<>();
    if (e.boot() != null && e.seq() != null) {
      String replay = state.seen(e.boot(), e.seq());
      if (replay != null) {
        found.add(new Found(SEQ_REPLAY, replay));
      }
    }
    String clock = clock(e, state);
    if (clock != null) {
      found.add(new Found(CLOCK_OFFSET, clock));
    }
    Fix fix = fix(e);
    if (fix != null) {
      // with its clock off, the event's time says nothing about speeds: only the odometer
      motion(fix, state, clock == null, found);
    }
    String stuck = stuck(e, state);
    if (stuck != null) {
      found.add(new Found(SENSOR_STUCK, stuck));
    }
    return found;
  }

  private String clock(Event e, VehicleState state) {
    double ahead = e.time() - e.enqueued();
    if (!Double.isNaN(ahead) && ahead > maxClockAhead) {
      return "event_time " + fixed(ahead, 1) + " s ahead of the enqueued time";
    }
    if (!state.hasLast || !Objects.equals(state.lastBoot, e.boot()) || state.steps.isEmpty()) {
      return null;
    }
    long gap = e.seq() != null ? e.seq() - (state.lastSeq == null ? 0 : state.lastSeq) : 0;
    if (gap < 1) {
      return null;
    }
    double step = e.time() - state.lastT;
    double longest = state.steps.stream().mapToDouble(Double::doubleValue).max().orElseThrow();
    // Events of different types interleave, so any step from 0 to the longest recent one is
    // usual, times the events in between that were not learned (quarantined, say).
    double low = -clockTolerance;
    double high = gap * longest + clockTolerance;
    for (double offset : clockOffsets) {
      if (high - low >= offset) {
        continue;  // the vehicle's recent steps vary too much to tell this offset apart
      }
      for (int sign : new int[] {1, -1}) {
        double shifted = step - sign * offset;
        if (low <= shifted && shifted <= high) {
          return "event_time steps " + fixed(step, 1) + " s after the last event: a usual step "
              + "(up to " + fixed(longest, 1) + " s) " + (sign > 0 ? "+" : "-") + " a "
              + general(offset) + " s clock offset";
        }
      }
    }
    return null;
  }

  private void motion(Fix fix, VehicleState state, boolean timed, List<Found> found) {
    Fix[] around = state.neighbours(fix.t, fix.boot, fix.seq);
    Fix before = around[0];
    Fix after = around[1];
    if (fix.odometer != null) {
      if (before != null && before.odometer != null
          && fix.odometer < before.odometer - odometerTolerance) {
        found.add(new Found(ODOMETER,
            fixed(fix.odometer, 1) + " m after " + fixed(before.odometer, 1) + " m"));
      } else if (after != null && after.odometer != null
          && fix.odometer > after.odometer + odometerTolerance) {
        found.add(new Found(ODOMETER,
            fixed(fix.odometer, 1) + " m before " + fixed(after.odometer, 1) + " m"));
      }
    }
    if (fix.lat == null || fix.lon == null || !timed) {
      return;
    }
    if (before != null && jump(before, fix) != null) {
      Fix earlier = state.before(before);
      if (earlier != null && jump(earlier, fix) == null) {
        // this event agrees with the fix before that one: the one in between was the jump
        // (learned before anything could contradict it), so it is forgotten, not this one
        state.forget(before);
        before = earlier;
      } else {
        found.add(new Found(POSITION_JUMP, jump(before, fix)));
        return;
      }
    }
    if (after != null && jump(fix, after) != null) {
      found.add(new Found(POSITION_JUMP, jump(fix, after)));
      return;
    }
    if (fix.speed != null && before != null && before.speed != null && before.lat != null
        && before.lon != null && 0 < fix.t - before.t && fix.t - before.t <= maxFixGap) {
      double dt = fix.t - before.t;
      double implied = distance(before.lat, before.lon, fix.lat, fix.lon) / dt;
      double reported = (fix.speed + before.speed) / 2;
      double base = Math.max(speedTolerance, speedToleranceRatio * implied);
      // Both the mean of the two readings and this reading alone must disagree, each beyond
      // what braking or accelerating between the fixes can explain (a*dt/4 for the mean of
      // the ends, a*dt/2 for one end), so a hard stop is not mistaken for a unit error.
      double swing = speedChange * dt;
      if (Math.abs(reported - implied) > base + swing / 4
          && Math.abs(fix.speed - implied) > base + swing / 2) {
        found.add(new Found(SPEED_DISTANCE, "reported " + fixed(reported, 1) + " m/s, "
            + fixed(implied, 1) + " m/s from the fixes over " + fixed(dt, 1) + " s"));
      }
    }
  }

  /** Why going from fix {@code a} to fix {@code b} is faster than any car, or null. */
  private String jump(Fix a, Fix b) {
    if (a.lat == null || a.lon == null || b.lat == null || b.lon == null) {
      return null;
    }
    double dt = Math.abs(b.t - a.t);
    double implied = distance(a.lat, a.lon, b.lat, b.lon) / Math.max(dt, 1.0);
    return implied > maxSpeed ? fixed(implied, 0) + " m/s over " + fixed(dt, 1) + " s" : null;
  }

  /** Great-circle distance (haversine), metres. */
  static double distance(double lat1, double lon1, double lat2, double lon2) {
    double p1 = Math.toRadians(lat1);
    double p2 = Math.toRadians(lat2);
    double dp = p2 - p1;
    double dl = Math.toRadians(lon2 - lon1);
    double sp = Math.sin(dp / 2);
    double sl = Math.sin(dl / 2);
    double a = sp * sp + Math.cos(p1) * Math.cos(p2) * (sl * sl);
    return 2 * 6_371_008.8 * Math.asin(Math.min(1.0, Math.sqrt(a)));
  }

  private String stuck(Event e, VehicleState state) {
    Double moving = e.values()[speed];
    if (!chassis.equals(e.type()) || moving == null || moving < stuckMinSpeed) {
      return null;
    }
    for (int k = 0; k < stuckFields.length; k++) {
      String name = stuckFields[k];
      Double value = e.values()[stuck[k]];
      double[] held = state.stuck.get(name);
      if (value != null && held != null && held[0] == value && e.time() - held[1] > stuckAfter) {
        return name + " unchanged at " + general(value) + " for " + fixed(e.time() - held[1], 0)
            + " s while moving";
      }
    }
    return null;
  }

  private void stuckLearn(Event e, VehicleState state) {
    if (!chassis.equals(e.type())) {
      return;
    }
    for (int k = 0; k < stuckFields.length; k++) {
      String name = stuckFields[k];
      Double value = e.values()[stuck[k]];
      double[] held = state.stuck.get(name);
      if (value != null && (held == null || held[0] != value)) {
        state.stuck.put(name, new double[] {value, e.time()});
      }
    }
  }

  // -- numbers written as Python's format() writes them

  /** {@code format(x, ".Nf")}: the exact value rounded half-even, the sign kept. */
  public static String fixed(double x, int digits) {
    if (Double.isNaN(x) || Double.isInfinite(x)) {
      return Double.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
    }
    String text = new BigDecimal(x).setScale(digits, RoundingMode.HALF_EVEN).toPlainString();
    boolean negative = x < 0 || (x == 0 && 1 / x < 0);
    return negative && !text.startsWith("-") ? "-" + text : text;
  }

  /** {@code format(x, "g")}: six significant digits, trailing zeros dropped. */
  public static String general(double x) {
    if (Double.isNaN(x) || Double.isInfinite(x) || x == 0) {
      return x == 0 ? (1 / x < 0 ? "-0" : "0") : fixed(x, 0);
    }
    BigDecimal rounded = new BigDecimal(x).round(new MathContext(6, RoundingMode.HALF_EVEN));
    int exponent = rounded.precision() - rounded.scale() - 1;
    if (exponent >= -4 && exponent < 6) {
      return strip(rounded.setScale(Math.max(0, 5 - exponent), RoundingMode.HALF_EVEN)
          .toPlainString());
    }
    String mantissa = strip(rounded.movePointLeft(exponent).toPlainString());
    return mantissa + "e" + (exponent < 0 ? "-" : "+") + String.format("%02d", Math.abs(exponent));
  }

  private static String strip(String plain) {
    if (!plain.contains(".")) {
      return plain;
    }
    String stripped = plain.replaceAll("0+$", "");
    return stripped.endsWith(".") ? stripped.substring(0, stripped.length() - 1) : stripped;
  }

  static JsonNode read(String json) {
    try {
      return JSON.readTree(json);
    } catch (java.io.IOException error) {
      throw new IllegalArgumentException("not JSON: " + error.getMessage());
    }
  }

  private static String[] strings(JsonNode array) {
    String[] out = new String[array.size()];
    Arrays.setAll(out, i -> array.get(i).asText());
    return out;
  }

  private static String text(JsonNode node) {
    return node == null || node.isNull() ? null : node.asText();
  }

  /** A JSON number as a double; anything else null (as Spark's from_json reads a double). */
  private static Double number(JsonNode node) {
    if (node == null || !node.isNumber()) {
      return null;
    }
    double value = node.asDouble();
    return Double.isNaN(value) ? null : value;
  }
}
