package jobs.jvm;

import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Row;

/** The grouping key of the dedup stage: a row's event id (null for none). */
public final class EventIdKey implements MapFunction<Row, String> {
  private final int index;

  public EventIdKey(int index) {
    this.index = index;
  }

  @Override
  public String call(Row row) {
    return row.isNullAt(index) ? null : row.getString(index);
  }
}
