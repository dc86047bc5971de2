package jobs.jvm;

import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Row;

/** A stateful stage's grouping key: a row's string column (null for none). */
public final class ColumnKey implements MapFunction<Row, String> {
  private final int index;

  public ColumnKey(int index) {
    this.index = index;
  }

  @Override
  public String call(Row row) {
    return row.isNullAt(index) ? null : row.getString(index);
  }
}
