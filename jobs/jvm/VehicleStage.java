package jobs.jvm;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.Serializable;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.MapState;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The ingest query's stateful stage: Spark's transformWithState keyed by VIN (by event id for an
 * event without one), deduplication then the per-vehicle rules (see jobs/stages/dedup.py and
 * jobs/stages/vehicle/stage.py). A re-send carries its VIN, so both states of a vehicle live
 * under one key and a batch needs one shuffle and one state store commit for both.
 *
 * <p>Every input row comes out once, with a duplicate flag appended, then (with rules) its
 * failures. Dedup keeps, per event id, the event time of its last fresh copy in a map state with
 * a TTL of the window; of a batch's candidate copies of an id, the first by (enqueued time,
 * partition, sequence number) is compared with the recorded time, the others are duplicates.
 * The rules read and write the vehicle's state once per batch, and only when the batch has a
 * trusted event of it that is not a duplicate.
 */
public final class VehicleStage extends StatefulProcessor<String, Row, Row> {
  private static final long serialVersionUID = 1L;
  private final long windowMicros;
  private final int eventId;
  private final int time;
  private final int candidate;
  private final int enqueued;
  private final int partition;
  private final int sequence;
  private final Checks checks;  // null: deduplication only
  private transient MapState<String, Long> recorded;
  private transient ValueState<byte[]> vehicle;

  /** The per-vehicle rules with the positions of the columns they read besides dedup's. */
  private static final class Checks implements Serializable {
    private static final long serialVersionUID = 1L;
    final VehicleRules rules;
    final long ttlMillis;
    final int vin;
    final int trusted;
    final int type;
    final int boot;
    final int seq;
    final int values;

    Checks(JsonNode config, JsonNode at) {
      rules = new VehicleRules(config.toString());
      ttlMillis = (long) (config.get("state_ttl_hours").asDouble() * 3600 * 1000);
      vin = at.get("vin").asInt();
      trusted = at.get("vehicle_trusted").asInt();
      type = at.get("event_type").asInt();
      boot = at.get("boot_id").asInt();
      seq = at.get("seq_num").asInt();
      values = at.get("vehicle_fields").asInt();
    }
  }

  /**
   * The configuration as JSON: "window_s", "columns" (the input's position of each column read)
   * and "rules" (the rules' configuration, or null for deduplication only).
   */
  public VehicleStage(String config) {
    JsonNode c = VehicleRules.read(config);
    JsonNode at = c.get("columns");
    windowMicros = c.get("window_s").asLong() * 1_000_000L;
    eventId = at.get("event_id").asInt();
    time = at.get("event_time").asInt();
    candidate = at.get("_dedup_candidate").asInt();
    enqueued = at.get("enqueuedTime").asInt();
    partition = at.get("partition").asInt();
    sequence = at.get("sequenceNumber").asInt();
    JsonNode rules = c.get("rules");
    checks = rules == null || rules.isNull() ? null : new Checks(rules, at);
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    recorded = getHandle().getMapState("event_ids", Encoders.STRING(), Encoders.LONG(),
        TTLConfig.apply(Duration.ofMillis(windowMicros / 1000)));
    if (checks != null) {
      vehicle = getHandle().getValueState("vehicle", Encoders.BINARY(),
          TTLConfig.apply(Duration.ofMillis(checks.ttlMillis)));
    }
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timerValues) {
    List<Row> input = new ArrayList<>();
    while (rows.hasNext()) {
      input.add(rows.next());
    }
    boolean[] duplicate = duplicates(key, input);
    List<List<String[]>> failures = checks == null ? null : check(input, duplicate);
    List<Row> out = new ArrayList<>(input.size());
    for (int i = 0; i < input.size(); i++) {
      if (checks == null) {
        out.add(Rows.with(input.get(i), duplicate[i]));
        continue;
      }
      List<Row> found = new ArrayList<>();
      for (String[] f : failures == null ? List.<String[]>of() : failures.get(i)) {
        found.add(RowFactory.create((Object[]) f));
      }
      out.add(Rows.with(input.get(i), duplicate[i], CollectionConverters.asScala(found).toSeq()));
    }
    return CollectionConverters.asScala(out.iterator());
  }

  /** Which rows are later copies of an event id; records the fresh ones' event times. */
  private boolean[] duplicates(String key, List<Row> input) {
    boolean[] duplicate = new boolean[input.size()];
    Map<String, List<Integer>> copies = new LinkedHashMap<>();
    for (int i = 0; i < input.size(); i++) {
      Row row = input.get(i);
      if (key != null && !row.isNullAt(eventId) && !row.isNullAt(candidate)
          && row.getBoolean(candidate)) {
        copies.computeIfAbsent(row.getString(eventId), id -> new ArrayList<>()).add(i);
      }
    }
    for (Map.Entry<String, List<Integer>> id : copies.entrySet()) {
      List<Integer> order = id.getValue();
      order.sort(Comparator.comparingLong((Integer i) -> input.get(i).isNullAt(enqueued)
              ? Long.MAX_VALUE : Rows.micros(input.get(i).get(enqueued)))
          .thenComparing((a, b) -> Rows.compare(input.get(a), input.get(b), partition))
          .thenComparing((a, b) -> Rows.compare(input.get(a), input.get(b), sequence)));
      Row first = input.get(order.get(0));
      Long at = first.isNullAt(time) ? null : Rows.micros(first.get(time));
      Long seen = recorded.getValue(id.getKey());  // null for none: one read of the state store
      // an event without an event time is a duplicate of any recorded copy of its id
      boolean again = seen != null && (at == null || Math.abs(at - seen) <= windowMicros);
      duplicate[order.get(0)] = again;
      for (int k = 1; k < order.size(); k++) {
        duplicate[order.get(k)] = true;
      }
      if (!again && at != null) {
        recorded.updateValue(id.getKey(), at);
      }
    }
    return duplicate;
  }

  /** The rules on a vehicle's rows (none for a key that is not a VIN); updates its state. */
  private List<List<String[]>> check(List<Row> input, boolean[] duplicate) {
    if (input.get(0).isNullAt(checks.vin)) {
      return null;
    }
    List<VehicleRules.Event> events = new ArrayList<>();
    boolean anyTrusted = false;
    for (int i = 0; i < input.size(); i++) {
      VehicleRules.Event e = event(input.get(i), duplicate[i]);
      anyTrusted |= e.trusted();
      events.add(e);
    }
    if (!anyTrusted) {
      return null;
    }
    VehicleState known = VehicleState.read(vehicle.get());  // one read of the state store
    List<List<String[]>> failures = checks.rules.check(events, known);
    vehicle.update(known.write());
    return failures;
  }

  private VehicleRules.Event event(Row row, boolean duplicate) {
    Double[] read = new Double[checks.rules.fieldCount()];
    if (!row.isNullAt(checks.values)) {
      Row struct = row.getStruct(checks.values);
      for (int i = 0; i < read.length; i++) {
        if (!struct.isNullAt(i)) {
          double v = struct.getDouble(i);
          read[i] = Double.isNaN(v) ? null : v;
        }
      }
    }
    return new VehicleRules.Event(
        row.isNullAt(checks.type) ? null : row.getString(checks.type),
        row.isNullAt(checks.boot) ? null : row.getString(checks.boot),
        row.isNullAt(checks.seq) ? null : ((Number) row.get(checks.seq)).longValue(),
        Rows.seconds(row, time),
        Rows.seconds(row, enqueued),
        row.isNullAt(partition) ? null : String.valueOf(row.get(partition)),
        row.isNullAt(sequence) ? 0 : ((Number) row.get(sequence)).longValue(),
        !duplicate && !row.isNullAt(checks.trusted) && row.getBoolean(checks.trusted),
        read);
  }
}
