package jobs.jvm;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The dedup stage: Spark's transformWithState keyed by event id (see jobs/stages/dedup.py).
 *
 * <p>Per key it keeps the event time of the id's last fresh copy, with a TTL of the window, in
 * the state store on the executors; a batch reads the state of its own ids only. Every input row
 * comes out once, with a duplicate flag appended. Of a batch's candidate copies of an id, the
 * first by (enqueued time, partition, sequence number) is compared with the recorded time; the
 * others are duplicates. Rows that are not candidates pass through unflagged and leave no state.
 */
public final class EventIdDedup extends StatefulProcessor<String, Row, Row> {
  private final long windowMicros;
  private final int time;
  private final int candidate;
  private final int enqueued;
  private final int partition;
  private final int sequence;
  private transient ValueState<Long> recorded;

  /** The window in seconds, then the input's column positions. */
  public EventIdDedup(
      long windowSeconds, int time, int candidate, int enqueued, int partition, int sequence) {
    this.windowMicros = windowSeconds * 1_000_000L;
    this.time = time;
    this.candidate = candidate;
    this.enqueued = enqueued;
    this.partition = partition;
    this.sequence = sequence;
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    recorded = getHandle().getValueState("recorded", Encoders.LONG(),
        TTLConfig.apply(Duration.ofMillis(windowMicros / 1000)));
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> rows, TimerValues timerValues) {
    List<Row> out = new ArrayList<>();
    List<Row> copies = new ArrayList<>();
    while (rows.hasNext()) {
      Row row = rows.next();
      if (key != null && !row.isNullAt(candidate) && row.getBoolean(candidate)) {
        copies.add(row);
      } else {
        out.add(Rows.with(row, false));
      }
    }
    if (copies.isEmpty()) {
      return CollectionConverters.asScala(out.iterator());
    }
    copies.sort(Comparator.comparingLong((Row r) -> r.isNullAt(enqueued) ? Long.MAX_VALUE
            : Rows.micros(r.get(enqueued)))
        .thenComparing((Row a, Row b) -> compare(a, b, partition))
        .thenComparing((Row a, Row b) -> compare(a, b, sequence)));
    Row first = copies.get(0);
    Long at = first.isNullAt(time) ? null : Rows.micros(first.get(time));
    Long seen = recorded.get();  // null for none: one read of the state store
    // an event without an event time is a duplicate of any recorded copy of its id
    boolean duplicate = seen != null && (at == null || Math.abs(at - seen) <= windowMicros);
    out.add(Rows.with(first, duplicate));
    for (int i = 1; i < copies.size(); i++) {
      out.add(Rows.with(copies.get(i), true));
    }
    if (!duplicate && at != null) {
      recorded.update(at);
    }
    return CollectionConverters.asScala(out.iterator());
  }

  /** Two rows' values of one column (a string or a number), nulls last. */
  @SuppressWarnings({"unchecked", "rawtypes"})
  private static int compare(Row a, Row b, int index) {
    if (a.isNullAt(index) || b.isNullAt(index)) {
      return Boolean.compare(a.isNullAt(index), b.isNullAt(index));
    }
    return ((Comparable) a.get(index)).compareTo(b.get(index));
  }
}
