package jobs.jvm;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The per-vehicle stage: Spark's transformWithState keyed by VIN (see
 * jobs/stages/vehicle/stage.py). Every input row comes out once, with its failures appended
 * (an array of (rule, column, observed, on_failure)); the vehicle's state is read and written
 * once per batch, and only when the batch has a trusted event of it.
 */
public final class VehicleChecks extends StatefulProcessor<String, Row, Row> {
  private static final long serialVersionUID = 1L;
  private final VehicleRules rules;
  private final long ttlMillis;
  private final int trusted;
  private final int type;
  private final int boot;
  private final int seq;
  private final int time;
  private final int enqueued;
  private final int partition;
  private final int position;
  private final int values;
  private final int fields;
  private transient ValueState<byte[]> state;

  /**
   * The rules' configuration as JSON, with "state_ttl_hours" and "columns": the input's position
   * of each column the rules read.
   */
  public VehicleChecks(String config) {
    rules = new VehicleRules(config);
    JsonNode c = VehicleRules.read(config);
    ttlMillis = (long) (c.get("state_ttl_hours").asDouble() * 3600 * 1000);
    JsonNode at = c.get("columns");
    trusted = at.get("vehicle_trusted").asInt();
    type = at.get("event_type").asInt();
    boot = at.get("boot_id").asInt();
    seq = at.get("seq_num").asInt();
    time = at.get("event_time").asInt();
    enqueued = at.get("enqueuedTime").asInt();
    partition = at.get("partition").asInt();
    position = at.get("sequenceNumber").asInt();
    values = at.get("vehicle_fields").asInt();
    fields = c.get("fields").size();
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    state = getHandle().getValueState("vehicle", Encoders.BINARY(),
        TTLConfig.apply(Duration.ofMillis(ttlMillis)));
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timerValues) {
    List<Row> input = new ArrayList<>();
    List<VehicleRules.Event> events = new ArrayList<>();
    boolean anyTrusted = false;
    while (rows.hasNext()) {
      Row row = rows.next();
      input.add(row);
      VehicleRules.Event e = event(row);
      anyTrusted |= e.trusted();
      events.add(e);
    }
    List<List<String[]>> failures = null;
    if (key != null && anyTrusted) {
      VehicleState known = VehicleState.read(state.get());  // one read of the state store
      failures = rules.check(events, known);
      state.update(known.write());
    }
    List<Row> out = new ArrayList<>(input.size());
    for (int i = 0; i < input.size(); i++) {
      List<Row> found = new ArrayList<>();
      for (String[] f : failures == null ? List.<String[]>of() : failures.get(i)) {
        found.add(RowFactory.create((Object[]) f));
      }
      out.add(Rows.with(input.get(i), CollectionConverters.asScala(found).toSeq()));
    }
    return CollectionConverters.asScala(out.iterator());
  }

  private VehicleRules.Event event(Row row) {
    Double[] read = new Double[fields];
    if (!row.isNullAt(values)) {
      Row struct = row.getStruct(values);
      for (int i = 0; i < fields; i++) {
        if (!struct.isNullAt(i)) {
          double v = struct.getDouble(i);
          read[i] = Double.isNaN(v) ? null : v;
        }
      }
    }
    return new VehicleRules.Event(
        row.isNullAt(type) ? null : row.getString(type),
        row.isNullAt(boot) ? null : row.getString(boot),
        row.isNullAt(seq) ? null : ((Number) row.get(seq)).longValue(),
        Rows.seconds(row, time),
        Rows.seconds(row, enqueued),
        row.isNullAt(partition) ? null : String.valueOf(row.get(partition)),
        row.isNullAt(position) ? 0 : ((Number) row.get(position)).longValue(),
        !row.isNullAt(trusted) && row.getBoolean(trusted),
        read);
  }
}
